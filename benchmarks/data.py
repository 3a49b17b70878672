"""The reviews every scenario uses: the shared Yelp test file, cycled as needed."""

from __future__ import annotations

from pathlib import Path

from contracts.reviewfiles import SAMPLE, ReviewFile, shared_data


def default_reviews() -> Path:
    """``shared/data`` beside the checkout (or beside a folder of worktrees holding it); where
    a clone has no shared data beside it, the repository's sample of the same test file (the
    report names the file it used)."""
    shared = shared_data("yelp/test.csv.gz")
    return shared if shared.is_file() else SAMPLE / "test.csv.gz"


DEFAULT_REVIEWS = default_reviews()


def load_reviews(path: Path = DEFAULT_REVIEWS, limit: int | None = None) -> list[tuple[str, int]]:
    """(text, label) pairs in file order; rows without a text or a label are left out."""
    rows: list[tuple[str, int]] = [
        (row.text, row.label)
        for row in ReviewFile(path, require_label=True).rows()
        if row.label is not None
    ]
    return rows[:limit] if limit else rows
