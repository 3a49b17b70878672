"""The reviews every scenario uses: the shared Yelp test file, cycled as needed."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

DEFAULT_REVIEWS = Path(__file__).resolve().parent.parent.parent / "shared/data/yelp/test.csv.gz"


def load_reviews(path: Path = DEFAULT_REVIEWS, limit: int | None = None) -> list[tuple[str, int]]:
    """(text, label) pairs in file order."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = [(row["text"], int(row["label"])) for row in csv.DictReader(f)]
    return rows[:limit] if limit else rows
