"""A data snapshot: the exact labelled reviews a model trains on, as bytes with a digest.

A snapshot is the shared training file(s) (their star rule applied) plus the labelled reviews
users gave, from allowed feedback sources only (one noisy client cannot poison training):

- the live reviews of the previous snapshot of the same recipe carried forward (the requests
  topic keeps a prediction's text only for its retention; the snapshot keeps it for good);
- de-duplicated by normalised text (case and spacing); the files come first and keep their
  label (curated data over a user's click), and among live reviews the latest label wins, as
  in the statistics (a correction replaces a mistake);
- no review whose text is in the test file, whatever its source, so test never leaks in;
- written in one canonical order (by text) as the reviewstream CSV (``text,label,stars,source``,
  stars empty since the rule is applied) so ``training.data.load`` reads it like any file.

The digest is the sha256 of the uncompressed CSV: the content's identity, whichever zlib
compresses it. The stored file is gzip with no name and mtime 0, so one build is reproducible
to the byte.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from contracts.reviewfiles import Row

FILE_SOURCE = "file:"
FEEDBACK_SOURCE = "feedback:"
HEADER = ("text", "label", "stars", "source")
CARRIED = datetime(1970, 1, 1, tzinfo=UTC)  # older than any label given


@dataclass(frozen=True)
class LiveLabel:
    """A review a user labelled: its text, the label that stands, who gave it and when."""

    text: str
    label: int
    source: str
    given_at: datetime


@dataclass
class Counts:
    """What building a snapshot kept and left out, and why."""

    from_files: int = 0
    from_feedback: int = 0
    duplicates: int = 0
    in_test: int = 0
    sources_refused: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "from_files": self.from_files,
            "from_feedback": self.from_feedback,
            "duplicates": self.duplicates,
            "in_test": self.in_test,
            "sources_refused": dict(sorted(self.sources_refused.items())),
        }


@dataclass(frozen=True)
class Snapshot:
    csv: bytes  # uncompressed, canonical
    counts: Counts

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.csv).hexdigest()

    @property
    def rows(self) -> int:
        return self.counts.from_files + self.counts.from_feedback

    def gzipped(self) -> bytes:
        return gzip.compress(self.csv, compresslevel=9, mtime=0)

    def write(self, folder: Path) -> Path:
        """``<folder>/<digest>.csv.gz``: the file stored and trained on."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / file_name(self.digest)
        path.write_bytes(self.gzipped())
        return path


def file_name(digest: str) -> str:
    return f"{digest}.csv.gz"


def normalize(text: str) -> str:
    """What makes two reviews the same review: case and runs of white space do not count."""
    return " ".join(text.casefold().split())


def build(
    files: Iterable[tuple[str, Iterable[Row]]],
    live: Iterable[LiveLabel],
    *,
    test_texts: Iterable[str],
    allowed_sources: Iterable[str],
) -> Snapshot:
    """The snapshot of ``files`` (name, rows after the star rule) and ``live`` labels."""
    excluded = {normalize(t) for t in test_texts}
    allowed = set(allowed_sources)
    counts = Counts()
    kept: dict[str, tuple[str, int, str]] = {}  # normalised text -> (text, label, source)

    def keep(text: str, label: int, source: str) -> bool:
        key = normalize(text)
        if not key:
            return False
        if key in excluded:
            counts.in_test += 1
        elif key in kept:
            counts.duplicates += 1
        else:
            kept[key] = (text, label, source)
            return True
        return False

    for name, rows in files:
        for row in rows:
            assert row.label is not None  # a dataset row always has one
            counts.from_files += keep(row.text, row.label, FILE_SOURCE + name)
    for review in sorted(live, key=lambda r: r.given_at, reverse=True):  # latest label first
        if review.source not in allowed:
            counts.sources_refused[review.source] += 1
            continue
        counts.from_feedback += keep(review.text, review.label, FEEDBACK_SOURCE + review.source)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for text, label, source in sorted(kept.values()):
        writer.writerow((text, label, "", source))
    return Snapshot(out.getvalue().encode("utf-8"), counts)


def carried_labels(path: Path) -> list[LiveLabel]:
    """The live reviews of an earlier snapshot file, as the oldest labels there are: a review
    whose request text has left the topic's retention stays in the data, and any label given
    since replaces it."""
    reader = csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode("utf-8")))
    return [
        LiveLabel(row["text"], int(row["label"]), row["source"][len(FEEDBACK_SOURCE) :], CARRIED)
        for row in reader
        if row["source"].startswith(FEEDBACK_SOURCE)
    ]


def content_digest(gzipped: bytes) -> str:
    """The digest of a stored snapshot file (its uncompressed content)."""
    return hashlib.sha256(gzip.decompress(gzipped)).hexdigest()
