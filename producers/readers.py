"""Reviews from files: CSV, JSONL or plain text, gzipped or not.

A file yields, in order, one :class:`Row` or one :class:`BadRow` per record. Records are
numbered from 1 (a CSV header is not a record) and every one carries the line it starts on, so
a bad row is always reported by its line, and a record keeps its number whatever is skipped
around it. Nothing is dropped silently: deciding what a bad row does is the caller's job.

Formats:

- CSV: a header row, then records; Python ``csv`` quoting (fields may hold newlines), parsed
  strictly so that broken quoting is a bad row and not a silently mangled text.
- JSONL: one JSON object per line.
- plain text: one review per line, no labels.

Gzip is recognised by its magic bytes, whatever the file is called. Text must be UTF-8 (a
byte-order mark is accepted); a line that is not is a bad row, not a crash.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, cast

from contracts import Label
from producers.errors import InputError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
# Long reviews (whole movie reviews) are far beyond csv's default of 128 KiB per field.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
LOGGED_BAD_ROWS = 50
LABEL_NAMES: dict[str, Label] = {
    "0": 0,
    "1": 1,
    "0.0": 0,
    "1.0": 1,
    "negative": 0,
    "positive": 1,
    "neg": 0,
    "pos": 1,
}


class OnBadRow(StrEnum):
    """What a bad row does: reported and skipped (counted), or the run stops before sending."""

    SKIP = "skip"
    FAIL = "fail"


class InputFormat(StrEnum):
    AUTO = "auto"
    CSV = "csv"
    JSONL = "jsonl"
    TEXT = "text"


@dataclass(frozen=True)
class Row:
    """One review to send: its record number, where it came from, its text and known label."""

    number: int
    where: str
    text: str
    label: Label | None = None
    line: int | None = None
    request_id: str | None = None  # the id it already had (a replayed Kafka record)


@dataclass(frozen=True)
class BadRow:
    """A record that cannot be sent, and why."""

    number: int
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Scan:
    """What a first pass over a file found: how many rows to send, and the bad rows."""

    rows: int = 0
    bad_count: int = 0
    bad: list[BadRow] = field(default_factory=list)
    keep_bad: int = 1000

    def enforce(self, policy: OnBadRow, source: object) -> None:
        """Log every bad row kept (with its line); with FAIL, stop with an InputError."""
        for bad in self.bad[:LOGGED_BAD_ROWS]:
            log.warning("%s: bad row at %s", source, bad)
        if self.bad_count > LOGGED_BAD_ROWS:
            log.warning("%s: ... and %d more bad rows", source, self.bad_count - LOGGED_BAD_ROWS)
        if self.bad_count and policy is OnBadRow.FAIL:
            first = self.bad[0]
            raise InputError(
                f"{source}: {self.bad_count} bad row(s), the first at {first}; nothing was sent"
                " (--on-bad-row skip sends the good rows)"
            )

    def add(self, item: Row | BadRow) -> None:
        if isinstance(item, Row):
            self.rows += 1
            return
        self.bad_count += 1
        if len(self.bad) < self.keep_bad:
            self.bad.append(item)


def parse_label(value: object) -> Label | None:
    """0/1 (also as text, 0.0/1.0, or negative/positive); None when empty or absent.

    Raises ValueError for anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"unknown label {value!r}")
    if isinstance(value, int | float) and value in (0, 1):
        return cast(Label, int(value))
    if isinstance(value, str):
        key = value.strip().lower()
        if not key:
            return None
        if key in LABEL_NAMES:
            return LABEL_NAMES[key]
    raise ValueError(f"unknown label {value!r}")


def detect_format(path: Path) -> InputFormat:
    """By the name (``.csv``, ``.jsonl``, ``.ndjson``, ``.txt``, each maybe ``.gz``), else by
    the content: a first character ``{`` means JSONL, anything else plain text."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix == ".csv":
        return InputFormat.CSV
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return InputFormat.JSONL
    if suffix == ".txt":
        return InputFormat.TEXT
    with open_binary(path) as stream:
        start = stream.read(4096).lstrip(codecs.BOM_UTF8 + b" \t\r\n")
    return InputFormat.JSONL if start.startswith(b"{") else InputFormat.TEXT


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == GZIP_MAGIC
        return cast(IO[bytes], gzip.open(path, "rb")) if gzipped else path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes as stored: the identity of an input for resumable runs."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


@dataclass(frozen=True)
class ReviewFile:
    """A file of reviews and how to read it.

    ``label_column`` is read when present (CSV header or JSON key); with ``require_label`` a
    record without a valid label is a bad row, and a CSV without the column cannot be used.
    """

    path: Path
    format: InputFormat = InputFormat.AUTO
    text_column: str = "text"
    label_column: str = "label"
    require_label: bool = False
    name: str | None = None  # how messages call it; default: the path ("<stdin>" for stdin)

    @property
    def title(self) -> str:
        return self.name or str(self.path)

    def resolved_format(self) -> InputFormat:
        return detect_format(self.path) if self.format is InputFormat.AUTO else self.format

    def records(self) -> Iterator[Row | BadRow]:
        """Every record in order; raises InputError only when the file as a whole is unusable."""
        fmt = self.resolved_format()
        if fmt is InputFormat.TEXT and self.require_label:
            raise InputError(f"{self.title}: plain text has no labels; use CSV or JSONL")
        with open_binary(self.path) as stream:
            lines = _Lines(stream, self.title)
            if fmt is InputFormat.CSV:
                yield from self._csv(lines)
            elif fmt is InputFormat.JSONL:
                yield from self._jsonl(lines)
            else:
                yield from self._text(lines)

    def rows(self) -> Iterator[Row]:
        """Only the good rows (after a :meth:`scan` has reported the bad ones)."""
        for item in self.records():
            if isinstance(item, Row):
                yield item

    def scan(self, limit: int | None = None) -> Scan:
        """Count the rows and collect the bad ones; stops after ``limit`` good rows."""
        scan = Scan()
        for item in self.records():
            if limit is not None and scan.rows >= limit:
                break
            scan.add(item)
        return scan

    def _csv(self, lines: _Lines) -> Iterator[Row | BadRow]:
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        reader = csv.reader(lines, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{self.title}: line 1: unreadable CSV header: {exc}") from None
        columns = {name.strip(): i for i, name in enumerate(header)}
        if self.text_column not in columns:
            raise InputError(
                f"{self.title}: no column {self.text_column!r} in the header {header}"
                " (choose one with --text-column)"
            )
        label_at = columns.get(self.label_column)
        if label_at is None and self.require_label:
            raise InputError(
                f"{self.title}: no column {self.label_column!r} in the header {header}"
                " (choose one with --label-column)"
            )
        text_at = columns[self.text_column]
        number = 0
        while True:
            start = reader.line_num + 1
            number += 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield BadRow(number, _lines_where(start, reader.line_num), f"broken quoting: {exc}")
                continue
            where = f"line {start}"
            if (bad := lines.undecodable(start, reader.line_num)) is not None:
                yield BadRow(number, where, f"not valid UTF-8 (line {bad})")
            elif not fields:
                yield BadRow(number, where, "blank line")
            elif len(fields) != len(header):
                yield BadRow(number, where, f"expected {len(header)} fields, got {len(fields)}")
            else:
                label = fields[label_at] if label_at is not None else None
                yield self._row(number, where, start, fields[text_at], label)

    def _jsonl(self, lines: _Lines) -> Iterator[Row | BadRow]:
        for number, line in enumerate(lines, 1):
            where = f"line {number}"
            if lines.undecodable(number, number) is not None:
                yield BadRow(number, where, "not valid UTF-8")
                continue
            if not line.strip():
                yield BadRow(number, where, "blank line")
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadRow(number, where, f"not valid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(data, dict):
                yield BadRow(number, where, f"expected a JSON object, got {type(data).__name__}")
                continue
            text = data.get(self.text_column)
            if text is not None and not isinstance(text, str):
                yield BadRow(number, where, f"{self.text_column!r} is not a string")
                continue
            yield self._row(number, where, number, text, data.get(self.label_column))

    def _text(self, lines: _Lines) -> Iterator[Row | BadRow]:
        for number, line in enumerate(lines, 1):
            where = f"line {number}"
            if lines.undecodable(number, number) is not None:
                yield BadRow(number, where, "not valid UTF-8")
            else:
                yield self._row(number, where, number, line.rstrip("\r\n"), None)

    def _row(
        self, number: int, where: str, line: int, text: str | None, label: object
    ) -> Row | BadRow:
        if text is None or not text.strip():
            return BadRow(number, where, "missing text")
        try:
            parsed = parse_label(label)
        except ValueError as exc:
            return BadRow(number, where, str(exc))
        if parsed is None and self.require_label:
            return BadRow(number, where, "missing label")
        return Row(number=number, where=where, text=text, label=parsed, line=line)


def _lines_where(first: int, last: int) -> str:
    return f"line {first}" if last <= first else f"lines {first}-{last}"


class _Lines:
    """The lines of a binary stream as text, one physical line each (``\\n`` kept), numbered.

    A line that is not UTF-8 is passed on with replacement characters and remembered, so the
    record that holds it becomes a bad row; a damaged gzip stream is an InputError with the line.
    """

    def __init__(self, stream: IO[bytes], title: str) -> None:
        self._stream = stream
        self._title = title
        self._bad: list[int] = []
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        try:
            for raw in self._stream:
                self.count += 1
                if self.count == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError:
                    self._bad.append(self.count)
                    yield raw.decode("utf-8", "replace")
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{self._title}: damaged after line {self.count}: {exc}") from None

    def undecodable(self, first: int, last: int) -> int | None:
        """The first line in [first, last] that was not UTF-8, if any."""
        while self._bad and self._bad[0] < first:
            self._bad.pop(0)
        if self._bad and self._bad[0] <= last:
            return self._bad[0]
        return None
