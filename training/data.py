"""Labelled reviews from CSV files: the reviewstream format and the Yelp Review Polarity format.

Two formats are read, plain or gzip-compressed (by the ``.gz`` suffix):

- ``reviewstream`` (the files in ``../shared/data``): a header ``text,label,stars,source``,
  Python ``csv`` quoting, texts may span lines. ``label`` is 0/1; ``stars`` (1-5) may be empty.
- ``yelp_polarity`` (Zhang, Zhao & LeCun 2015, the 560k-review set): no header, rows
  ``"class index","text"`` with class 1 = negative, 2 = positive and newlines written as a literal
  backslash-n. That set has no stars (it counts 3-star reviews as positive), so the label rule's
  star settings do not apply to it.

A row that cannot be read is a :class:`MalformedRow` naming the file and the line it starts on,
or, with ``skip_malformed``, is skipped and counted in the :class:`LoadReport`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

from inference.bundle import sha256_file

Format = Literal["auto", "reviewstream", "yelp_polarity"]
HEADER = ("text", "label", "stars", "source")
POLARITY_CLASSES = {"1": 0, "2": 1}
MAX_FIELD_CHARS = 1 << 20
EXAMPLES_KEPT = 5

csv.field_size_limit(min(sys.maxsize, MAX_FIELD_CHARS))


class DataError(Exception):
    """A data file that cannot be used: missing, unreadable, or holding a malformed row."""


class MalformedRow(DataError):
    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}, line {line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class LabelRule:
    """How stars become labels. Rows without stars keep the label their file gives."""

    positive_min_stars: float = 3.0
    drop_three_star: bool = False

    def label(self, stars: float) -> int | None:
        """0 or 1, or None when the row is dropped."""
        if self.drop_three_star and stars == 3:
            return None
        return int(stars >= self.positive_min_stars)


@dataclass(frozen=True)
class SourceFile:
    path: str
    sha256: str


@dataclass
class LoadReport:
    """What reading one file did, row by row."""

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


@dataclass(frozen=True)
class Examples:
    """Texts with 0/1 labels, and the files they came from."""

    name: str
    texts: list[str]
    labels: NDArray[np.int64]
    sources: tuple[SourceFile, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError("one label per text")

    def __len__(self) -> int:
        return len(self.texts)

    def digest(self) -> str:
        """sha256 of the examples themselves (label and text of every row, in order)."""
        h = hashlib.sha256()
        for text, label in zip(self.texts, self.labels.tolist(), strict=True):
            h.update(json.dumps([label, text]).encode())
            h.update(b"\n")
        return h.hexdigest()

    def take(self, indices: Sequence[int] | NDArray[np.int64], name: str | None = None) -> Examples:
        index = np.asarray(indices, dtype=np.int64)
        return Examples(
            name=name or self.name,
            texts=[self.texts[i] for i in index.tolist()],
            labels=self.labels[index],
            sources=self.sources,
        )

    def positive_rate(self) -> float:
        return float(self.labels.mean()) if len(self) else 0.0


def load(
    path: Path,
    *,
    name: str,
    fmt: Format = "auto",
    rule: LabelRule | None = None,
    skip_malformed: bool = False,
) -> tuple[Examples, LoadReport]:
    """Read a file of labelled reviews; raise MalformedRow, or skip and count, on a bad row."""
    rule = rule or LabelRule()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    texts: list[str] = []
    labels: list[int] = []
    report = LoadReport(path=path, format=fmt)
    try:
        report.format = detect_format(path) if fmt == "auto" else fmt
        reader = _read_polarity if report.format == "yelp_polarity" else _read_reviewstream
        for outcome in reader(path, rule, report):
            if isinstance(outcome, MalformedRow):
                if not skip_malformed:
                    raise outcome
                report.skipped(outcome)
                continue
            if outcome is None:
                continue
            text, label = outcome
            texts.append(text)
            labels.append(label)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}) after {report.rows} rows") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    report.kept = len(texts)
    if not texts:
        raise DataError(f"{path}: no usable rows ({report.summary()})")
    source = SourceFile(path=str(path), sha256=sha256_file(path))
    return Examples(name, texts, np.asarray(labels, dtype=np.int64), (source,)), report


def detect_format(path: Path) -> Literal["reviewstream", "yelp_polarity"]:
    """A header whose columns include text and label means reviewstream, else Yelp polarity."""
    with _open(path) as f:
        first = next(csv.reader(f), [])
    return "reviewstream" if {"text", "label"} <= set(first) else "yelp_polarity"


Outcome = tuple[str, int] | MalformedRow | None


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _records(path: Path) -> Iterator[tuple[int, list[str] | MalformedRow]]:
    """(line the record starts on, its fields) for each record; a csv.Error becomes a row error."""
    with _open(path) as f:
        reader = csv.reader(f, strict=True)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, MalformedRow(path, start, f"not valid CSV ({exc})")
                start = reader.line_num + 1
                continue
            yield start, row
            start = reader.line_num + 1


def _read_reviewstream(path: Path, rule: LabelRule, report: LoadReport) -> Iterator[Outcome]:
    records = _records(path)
    first = next(records, None)
    if first is None or isinstance(first[1], MalformedRow):
        raise DataError(f"{path}: no header line")
    header = first[1]
    missing = {"text", "label"} - set(header)
    if missing:
        raise DataError(f"{path}: header {header} lacks {sorted(missing)}")
    columns = {name: i for i, name in enumerate(header)}
    for line, row in records:
        report.rows += 1
        if isinstance(row, MalformedRow):
            yield row
            continue
        yield _reviewstream_row(path, line, row, columns, rule, report)


def _reviewstream_row(
    path: Path,
    line: int,
    row: list[str],
    columns: dict[str, int],
    rule: LabelRule,
    report: LoadReport,
) -> Outcome:
    if len(row) != len(columns):
        return MalformedRow(path, line, f"expected {len(columns)} fields, found {len(row)}")
    text = row[columns["text"]]
    if not text.strip():
        return MalformedRow(path, line, "empty text")
    raw_label = row[columns["label"]].strip()
    if raw_label not in {"0", "1"}:
        return MalformedRow(path, line, f"label must be 0 or 1, found {raw_label!r}")
    given = int(raw_label)
    raw_stars = row[columns["stars"]].strip() if "stars" in columns else ""
    if not raw_stars:
        return text, given
    try:
        stars = float(raw_stars)
    except ValueError:
        stars = float("nan")
    if not 1 <= stars <= 5:
        return MalformedRow(path, line, f"stars must be a number from 1 to 5, found {raw_stars!r}")
    label = rule.label(stars)
    if label is None:
        report.dropped_three_star += 1
        return None
    if label != given:
        report.relabelled += 1
    return text, label


def _read_polarity(path: Path, rule: LabelRule, report: LoadReport) -> Iterator[Outcome]:
    for line, row in _records(path):
        report.rows += 1
        if isinstance(row, MalformedRow):
            yield row
            continue
        if len(row) != 2:
            yield MalformedRow(path, line, f"expected 2 fields, found {len(row)}")
            continue
        label = POLARITY_CLASSES.get(row[0].strip())
        if label is None:
            yield MalformedRow(path, line, f"class must be 1 or 2, found {row[0]!r}")
            continue
        text = row[1].replace("\\n", "\n")
        if not text.strip():
            yield MalformedRow(path, line, "empty text")
            continue
        yield text, label


def split_validation(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    """A seeded, label-stratified (train, validation) split."""
    if not 0 < fraction < 1:
        raise ValueError("the validation fraction must be between 0 and 1")
    indices = np.arange(len(examples))
    train_idx, val_idx = train_test_split(
        indices, test_size=fraction, random_state=seed, stratify=examples.labels
    )
    return (
        examples.take(np.sort(train_idx), name="train"),
        examples.take(np.sort(val_idx), name="validation"),
    )


def sample(examples: Examples, size: int | None, seed: int) -> Examples:
    """A seeded, label-stratified subset of ``size`` rows (all rows when size is None or larger)."""
    if size is None or size >= len(examples):
        return examples
    indices = np.arange(len(examples))
    kept, _ = train_test_split(
        indices, train_size=size, random_state=seed, stratify=examples.labels
    )
    return examples.take(np.sort(kept))
