"""The bulk run's predictions file: JSONL or CSV, appended to and flushed one answer at a time.

It is also the run's memory: a re-run reads the request ids already in it and skips those rows,
so an interrupted run resumes without answering anything twice. A last line cut short by a
crash is ignored (with a warning) and the next answer starts on a fresh line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from contracts import Prediction
from contracts.reviewfiles import Row
from producers.errors import InputError

log = logging.getLogger(__name__)

FIELDS = [
    "request_id",
    "row",
    "line",
    "label",
    "probability",
    "model_name",
    "model_version",
    "worker_id",
    "predicted_at",
    "true_label",
]


class OutputFormat(StrEnum):
    AUTO = "auto"
    JSONL = "jsonl"
    CSV = "csv"


def resolve_format(path: Path, fmt: OutputFormat) -> OutputFormat:
    if fmt is not OutputFormat.AUTO:
        return fmt
    return OutputFormat.CSV if path.suffix.lower() == ".csv" else OutputFormat.JSONL


def record(prediction: Prediction, row: Row) -> dict[str, Any]:
    return {
        "request_id": prediction.request_id,
        "row": row.number,
        "line": row.line,
        "label": prediction.label,
        "probability": prediction.probability,
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "worker_id": prediction.worker_id,
        "predicted_at": prediction.predicted_at.isoformat(),
        "true_label": row.label,
    }


def answered_ids(path: Path, fmt: OutputFormat) -> set[str]:
    """The request ids already in an output file (none when it does not exist yet)."""
    if not path.exists():
        return set()
    fmt = resolve_format(path, fmt)
    ids: set[str] = set()
    broken = 0
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            if fmt is OutputFormat.CSV:
                reader = csv.DictReader(stream)
                if reader.fieldnames is not None and "request_id" not in reader.fieldnames:
                    raise InputError(f"{path} has no request_id column: not a predictions file")
                for item in reader:
                    if item.get("request_id") and None not in item.values():
                        ids.add(item["request_id"])
                    else:
                        broken += 1
            else:
                for line in stream:
                    try:
                        ids.add(str(json.loads(line)["request_id"]))
                    except (ValueError, KeyError, TypeError):
                        broken += 1
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the output file {path}: {exc}") from None
    if broken:
        log.warning(
            "%s: ignored %d incomplete line(s) (their rows will be sent again)", path, broken
        )
    return ids


@dataclass
class PredictionWriter:
    path: Path
    format: OutputFormat = OutputFormat.AUTO
    written: int = 0
    _stream: IO[str] | None = None
    _csv: Any = None

    def __enter__(self) -> PredictionWriter:
        self.format = resolve_format(self.path, self.format)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        cut_short = False
        try:
            if not fresh:
                with self.path.open("rb") as existing:
                    existing.seek(-1, io.SEEK_END)
                    cut_short = existing.read(1) != b"\n"
            self._stream = self.path.open("a", encoding="utf-8", newline="")
        except OSError as exc:
            raise InputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        if not fresh and cut_short:
            self._stream.write("\n")
        if self.format is OutputFormat.CSV:
            self._csv = csv.DictWriter(self._stream, fieldnames=FIELDS, lineterminator="\n")
            if fresh:
                self._csv.writeheader()
        return self

    def write(self, prediction: Prediction, row: Row) -> None:
        assert self._stream is not None, "use PredictionWriter as a context manager"
        item = record(prediction, row)
        if self._csv is not None:
            self._csv.writerow(item)
        else:
            self._stream.write(json.dumps(item) + "\n")
        self._stream.flush()  # an interrupted run keeps every answer it got
        self.written += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
