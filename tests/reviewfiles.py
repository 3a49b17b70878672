"""Small labelled review files in the shared data's format (gzip CSV: text,label,stars,source)."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

POSITIVE = ["wonderful", "delicious", "friendly", "great", "lovely"]
NEGATIVE = ["terrible", "cold", "rude", "awful", "dirty"]


def labelled_rows(count: int) -> list[tuple[str, int]]:
    """Distinct reviews, alternating positive and negative."""
    rows = []
    for i in range(count):
        label = (i + 1) % 2
        word = (POSITIVE if label else NEGATIVE)[i % 5]
        rows.append((f"Review {i}: the food was {word}, visit {i}.", label))
    return rows


def write_labelled_csv_gz(path: Path, rows: list[tuple[str, int]], *, bad: int = 0) -> Path:
    """The shared format; ``bad`` extra rows with no text are appended (reported, skipped)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "label", "stars", "source"])
    for text, label in rows:
        writer.writerow([text, label, 5 if label else 1, "test:reviews@000000000000"])
    for _ in range(bad):
        writer.writerow(["", 1, "", "test:broken@000000000000"])
    path.write_bytes(gzip.compress(buffer.getvalue().encode()))
    return path
