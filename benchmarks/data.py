"""The reviews every scenario uses: the shared Yelp test file, cycled as needed."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELATIVE = Path("shared/data/yelp/test.csv.gz")
SAMPLE = ROOT / "data" / "sample" / "test.csv.gz"  # same format, in the repository


def default_reviews() -> Path:
    """``shared/data`` beside the checkout (or beside a folder of worktrees holding it); where
    a clone has no shared data beside it, the repository's sample of the same test file (the
    report names the file it used)."""
    for folder in ROOT.parents:
        if (folder / RELATIVE).is_file():
            return folder / RELATIVE
    return SAMPLE


DEFAULT_REVIEWS = default_reviews()


def load_reviews(path: Path = DEFAULT_REVIEWS, limit: int | None = None) -> list[tuple[str, int]]:
    """(text, label) pairs in file order, empty texts skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = [
            (row["text"], int(row["label"])) for row in csv.DictReader(f) if row["text"].strip()
        ]
    return rows[:limit] if limit else rows
