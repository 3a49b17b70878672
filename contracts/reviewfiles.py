"""Review files: the formats reviews are read from, and the one reader of them.

Training, the producers and the benchmarks read reviews through this module, so a file means
the same to each of them. Two families of format share one way of reading: plain or gzip (by
its magic bytes, or a ``.gz`` name), UTF-8 line by line (a byte-order mark is accepted), CSV
parsed strictly (broken quoting is a bad row, never a silently mangled text), and every record
numbered from 1 and placed by the line it starts on.

- **Inputs** (:class:`ReviewFile`), reviews to classify or replay: CSV with a header (the text
  and label columns are named), JSONL (one object a line), plain text (one review a line).
  Labels are optional and lenient (0/1, 0.0/1.0, negative/positive). Every record comes out in
  order as a :class:`Row` or a :class:`BadRow` (a line that is not UTF-8 included); what a bad
  row does is the caller's choice.
- **Datasets** (:func:`read_dataset`), labelled reviews to train and test on: the reviewstream
  CSV (``text,label,stars,source``, the files in ``shared/data``; ``label`` is 0/1, ``stars``
  1-5 or empty) and Yelp Review Polarity (Zhang, Zhao & LeCun 2015: no header, rows
  ``"class","text"`` with class 1 negative and 2 positive, newlines written as a literal
  backslash-n, no stars). Strict: a bad row stops the read with a :class:`MalformedRow` naming
  its line, or is skipped and counted; stars relabel rows by a :class:`LabelRule`; a file that
  is not UTF-8 cannot be used.

Each family words its bad rows as its users print them ("expected 4 fields, got 2" in a
producer's report, "found 2" in ``python -m training check-data``); the reading is the same.

Errors::

    ReviewFileError        the file as a whole cannot be used (missing, damaged, wrong shape)
    └── MalformedRow       a dataset row that cannot be used, when bad rows stop the read

:func:`shared_data` finds the shared data beside the checkout.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import IO, Literal, cast

from contracts.messages import Label

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"  # a fixed sample of the shared data, in the repository
GZIP_MAGIC = b"\x1f\x8b"
# Long reviews (whole movie reviews) are far beyond csv's default of 128 KiB per field.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
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
POLARITY_CLASSES: dict[str, Label] = {"1": 0, "2": 1}
EXAMPLES_KEPT = 5

DatasetFormat = Literal["auto", "reviewstream", "yelp_polarity"]


class ReviewFileError(Exception):
    """A file that cannot be used as a whole: missing, unreadable, damaged, or wrongly shaped."""


class MalformedRow(ReviewFileError):
    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}, line {line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Row:
    """One review: its record number, where it came from, its text and known label."""

    number: int
    where: str
    text: str
    label: Label | None = None
    line: int | None = None
    request_id: str | None = None  # the id it already had (a replayed Kafka record)
    stars: float | None = None  # a dataset's star rating, when its row has one


@dataclass(frozen=True)
class BadRow:
    """A record that cannot be used, and why."""

    number: int
    where: str
    reason: str
    line: int | None = None  # the line it starts on, where it comes from a file

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


# --- reading: bytes, lines, CSV records ---------------------------------------------------------


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it is gzip: by its magic bytes whatever its name, or
    by a ``.gz`` name (which then must hold gzip: otherwise the file is damaged)."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == GZIP_MAGIC or path.suffix.lower() == ".gz"
        return cast(IO[bytes], gzip.open(path, "rb")) if gzipped else path.open("rb")
    except OSError as exc:
        raise ReviewFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes as stored: the identity of an input (resumable runs, lineage)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ReviewFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


class _Lines:
    """The lines of a binary stream as text, one physical line each (``\\n`` kept), numbered.

    A line that is not UTF-8 is passed on with replacement characters and remembered, so the
    record that holds it can be refused; a damaged gzip stream is a ReviewFileError.
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
            raise ReviewFileError(
                f"{self._title}: cannot be read, damaged after line {self.count}: {exc}"
            ) from None

    def undecodable(self, first: int, last: int) -> int | None:
        """The first line in [first, last] that was not UTF-8, if any."""
        while self._bad and self._bad[0] < first:
            self._bad.pop(0)
        if self._bad and self._bad[0] <= last:
            return self._bad[0]
        return None


@dataclass(frozen=True)
class _Record:
    """One CSV record (the header included): the lines it spans, its fields or why it has none."""

    first: int
    last: int
    fields: list[str] | csv.Error

    @property
    def where(self) -> str:
        if self.last <= self.first:
            return f"line {self.first}"
        return f"lines {self.first}-{self.last}"


def _csv_records(lines: _Lines) -> Iterator[_Record]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.reader(lines, strict=True)
    while True:
        first = reader.line_num + 1
        try:
            fields: list[str] | csv.Error = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            fields = exc
        yield _Record(first, reader.line_num, fields)


# --- inputs: CSV, JSONL, plain text -------------------------------------------------------------


class InputFormat(StrEnum):
    AUTO = "auto"
    CSV = "csv"
    JSONL = "jsonl"
    TEXT = "text"


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


@dataclass(frozen=True)
class ReviewFile:
    """A file of reviews to send, and how to read it.

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
        """Every record in order; raises ReviewFileError only when the file as a whole is
        unusable."""
        fmt = self.resolved_format()
        if fmt is InputFormat.TEXT and self.require_label:
            raise ReviewFileError(f"{self.title}: plain text has no labels; use CSV or JSONL")
        with open_binary(self.path) as stream:
            lines = _Lines(stream, self.title)
            if fmt is InputFormat.CSV:
                yield from self._csv(lines)
            elif fmt is InputFormat.JSONL:
                yield from self._jsonl(lines)
            else:
                yield from self._text(lines)

    def rows(self) -> Iterator[Row]:
        """Only the good rows (for a caller that has dealt with the bad ones already)."""
        for item in self.records():
            if isinstance(item, Row):
                yield item

    def _csv(self, lines: _Lines) -> Iterator[Row | BadRow]:
        records = _csv_records(lines)
        head = next(records, None)
        if head is None:
            return
        if isinstance(head.fields, csv.Error):
            raise ReviewFileError(f"{self.title}: line 1: unreadable CSV header: {head.fields}")
        header = head.fields
        columns = {name.strip(): i for i, name in enumerate(header)}
        if self.text_column not in columns:
            raise ReviewFileError(
                f"{self.title}: no column {self.text_column!r} in the header {header}"
                " (choose one with --text-column)"
            )
        label_at = columns.get(self.label_column)
        if label_at is None and self.require_label:
            raise ReviewFileError(
                f"{self.title}: no column {self.label_column!r} in the header {header}"
                " (choose one with --label-column)"
            )
        text_at = columns[self.text_column]
        for number, record in enumerate(records, 1):
            fields, where = record.fields, f"line {record.first}"
            if isinstance(fields, csv.Error):
                yield BadRow(number, record.where, f"broken quoting: {fields}", record.first)
            elif (bad := lines.undecodable(record.first, record.last)) is not None:
                yield BadRow(number, where, f"not valid UTF-8 (line {bad})", record.first)
            elif not fields:
                yield BadRow(number, where, "blank line", record.first)
            elif len(fields) != len(header):
                reason = f"expected {len(header)} fields, got {len(fields)}"
                yield BadRow(number, where, reason, record.first)
            else:
                label = fields[label_at] if label_at is not None else None
                yield self._row(number, where, record.first, fields[text_at], label)

    def _jsonl(self, lines: _Lines) -> Iterator[Row | BadRow]:
        for number, line in enumerate(lines, 1):
            where = f"line {number}"
            if lines.undecodable(number, number) is not None:
                yield BadRow(number, where, "not valid UTF-8", number)
                continue
            if not line.strip():
                yield BadRow(number, where, "blank line", number)
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                reason = f"not valid JSON: {exc.msg} at column {exc.colno}"
                yield BadRow(number, where, reason, number)
                continue
            if not isinstance(data, dict):
                reason = f"expected a JSON object, got {type(data).__name__}"
                yield BadRow(number, where, reason, number)
                continue
            text = data.get(self.text_column)
            if text is not None and not isinstance(text, str):
                yield BadRow(number, where, f"{self.text_column!r} is not a string", number)
                continue
            yield self._row(number, where, number, text, data.get(self.label_column))

    def _text(self, lines: _Lines) -> Iterator[Row | BadRow]:
        for number, line in enumerate(lines, 1):
            where = f"line {number}"
            if lines.undecodable(number, number) is not None:
                yield BadRow(number, where, "not valid UTF-8", number)
            else:
                yield self._row(number, where, number, line.rstrip("\r\n"), None)

    def _row(
        self, number: int, where: str, line: int, text: str | None, label: object
    ) -> Row | BadRow:
        if text is None or not text.strip():
            return BadRow(number, where, "missing text", line)
        try:
            parsed = parse_label(label)
        except ValueError as exc:
            return BadRow(number, where, str(exc), line)
        if parsed is None and self.require_label:
            return BadRow(number, where, "missing label", line)
        return Row(number=number, where=where, text=text, label=parsed, line=line)


# --- datasets: the reviewstream CSV and Yelp Review Polarity ------------------------------------


@dataclass(frozen=True)
class LabelRule:
    """How stars become labels. Rows without stars keep the label their file gives."""

    positive_min_stars: float = 3.0
    drop_three_star: bool = False

    def label(self, stars: float) -> Label | None:
        """0 or 1, or None when the row is dropped."""
        if self.drop_three_star and stars == 3:
            return None
        return 1 if stars >= self.positive_min_stars else 0


@dataclass
class LoadReport:
    """What reading one dataset file did, row by row."""

    path: Path
    format: str
    rows: int = 0
    kept: int = 0
    malformed: int = 0
    dropped_three_star: int = 0
    relabelled: int = 0
    malformed_examples: list[str] = field(default_factory=list)

    def skipped(self, error: MalformedRow) -> None:
        self.malformed += 1
        if len(self.malformed_examples) < EXAMPLES_KEPT:
            self.malformed_examples.append(f"line {error.line}: {error.reason}")

    def summary(self) -> str:
        text = (
            f"{self.path.name} ({self.format}): {self.rows} rows, {self.kept} kept, "
            f"{self.malformed} malformed skipped, {self.dropped_three_star} three-star dropped, "
            f"{self.relabelled} relabelled by the star rule"
        )
        if self.malformed_examples:
            text += "; e.g. " + "; ".join(self.malformed_examples)
        return text


def read_dataset(
    path: Path,
    *,
    fmt: DatasetFormat = "auto",
    rule: LabelRule | None = None,
    skip_malformed: bool = False,
) -> tuple[list[Row], LoadReport]:
    """The usable rows of a labelled dataset, their labels after the star rule.

    A bad row raises MalformedRow, or with ``skip_malformed`` is skipped and counted; a file
    that cannot be used, or holds no usable row, raises ReviewFileError.
    """
    rule = rule or LabelRule()
    if not path.is_file():
        raise ReviewFileError(f"{path}: no such file")
    report = LoadReport(path=path, format=detect_dataset_format(path) if fmt == "auto" else fmt)
    kept: list[Row] = []
    for item in _dataset_records(path, report.format):
        report.rows += 1
        if isinstance(item, BadRow):
            assert item.line is not None  # every dataset record comes from a line
            error = MalformedRow(path, item.line, item.reason)
            if not skip_malformed:
                raise error
            report.skipped(error)
        elif (row := _relabel(item, rule, report)) is not None:
            kept.append(row)
    report.kept = len(kept)
    if not kept:
        raise ReviewFileError(f"{path}: no usable rows ({report.summary()})")
    return kept, report


def detect_dataset_format(path: Path) -> Literal["reviewstream", "yelp_polarity"]:
    """A header whose columns include text and label means reviewstream, else Yelp polarity."""
    with open_binary(path) as stream:
        first = next(_csv_records(_Lines(stream, str(path))), None)
    fields = first.fields if first is not None and isinstance(first.fields, list) else []
    return "reviewstream" if {"text", "label"} <= set(fields) else "yelp_polarity"


def _dataset_records(path: Path, fmt: str) -> Iterator[Row | BadRow]:
    with open_binary(path) as stream:
        lines = _Lines(stream, str(path))
        records = _csv_records(lines)
        columns: dict[str, int] | None = None
        if fmt == "reviewstream":
            columns = _reviewstream_columns(path, next(records, None))
        for number, record in enumerate(records, 1):
            # A dataset is UTF-8 throughout (its header too): a line that is not means a file
            # of another kind, not a bad row.
            if (bad := lines.undecodable(1, record.last)) is not None:
                raise ReviewFileError(
                    f"{path}: not UTF-8 text (line {bad}) after {number - 1} rows"
                )
            if isinstance(record.fields, csv.Error):
                reason = f"not valid CSV ({record.fields})"
                yield BadRow(number, record.where, reason, record.first)
            elif columns is not None:
                yield _reviewstream_row(number, record.first, record.fields, columns)
            else:
                yield _polarity_row(number, record.first, record.fields)


def _reviewstream_columns(path: Path, header: _Record | None) -> dict[str, int]:
    if header is None or isinstance(header.fields, csv.Error):
        raise ReviewFileError(f"{path}: no header line")
    missing = {"text", "label"} - set(header.fields)
    if missing:
        raise ReviewFileError(f"{path}: header {header.fields} lacks {sorted(missing)}")
    return {name: i for i, name in enumerate(header.fields)}


def _reviewstream_row(
    number: int, line: int, fields: list[str], columns: dict[str, int]
) -> Row | BadRow:
    where = f"line {line}"
    if len(fields) != len(columns):
        reason = f"expected {len(columns)} fields, found {len(fields)}"
        return BadRow(number, where, reason, line)
    text = fields[columns["text"]]
    if not text.strip():
        return BadRow(number, where, "empty text", line)
    raw_label = fields[columns["label"]].strip()
    if raw_label not in {"0", "1"}:
        return BadRow(number, where, f"label must be 0 or 1, found {raw_label!r}", line)
    label: Label = 1 if raw_label == "1" else 0
    raw_stars = fields[columns["stars"]].strip() if "stars" in columns else ""
    if not raw_stars:
        return Row(number, where, text, label, line)
    try:
        stars = float(raw_stars)
    except ValueError:
        stars = float("nan")
    if not 1 <= stars <= 5:
        reason = f"stars must be a number from 1 to 5, found {raw_stars!r}"
        return BadRow(number, where, reason, line)
    return Row(number, where, text, label, line, stars=stars)


def _polarity_row(number: int, line: int, fields: list[str]) -> Row | BadRow:
    where = f"line {line}"
    if len(fields) != 2:
        return BadRow(number, where, f"expected 2 fields, found {len(fields)}", line)
    label = POLARITY_CLASSES.get(fields[0].strip())
    if label is None:
        return BadRow(number, where, f"class must be 1 or 2, found {fields[0]!r}", line)
    text = fields[1].replace("\\n", "\n")
    if not text.strip():
        return BadRow(number, where, "empty text", line)
    return Row(number, where, text, label, line)


def _relabel(row: Row, rule: LabelRule, report: LoadReport) -> Row | None:
    """The row with the label its stars give (None: dropped); rows without stars keep theirs."""
    if row.stars is None:
        return row
    label = rule.label(row.stars)
    if label is None:
        report.dropped_three_star += 1
        return None
    if label != row.label:
        report.relabelled += 1
        return replace(row, label=label)
    return row


# --- where the data is --------------------------------------------------------------------------


def shared_data(relative: str) -> Path:
    """``shared/data/<relative>`` beside the checkout, or beside a folder above it (a folder of
    worktrees); where none exists, the place beside the checkout (an error names it)."""
    for folder in ROOT.parents:
        if (folder / "shared" / "data" / relative).exists():
            return folder / "shared" / "data" / relative
    return ROOT.parent / "shared" / "data" / relative
