"""Labelled reviews as training sees them: texts and numpy labels, split and sampled.

The files are read by :mod:`contracts.reviewfiles` (the reviewstream CSV and Yelp Review
Polarity, the label rule from stars, malformed rows stopping the read by line number or skipped
and counted); this module keeps what training adds on top: :class:`Examples` with their content
digest and source files, and the seeded, label-stratified validation split and subsets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

from contracts.reviewfiles import DatasetFormat, LabelRule, LoadReport, file_digest, read_dataset
from contracts.reviewfiles import ReviewFileError as DataError

# DataError: training's name for a data file that cannot be used (check-data reports it).
__all__ = ["DataError", "Examples", "SourceFile", "load", "sample", "split_validation"]


@dataclass(frozen=True)
class SourceFile:
    path: str
    sha256: str


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
    fmt: DatasetFormat = "auto",
    rule: LabelRule | None = None,
    skip_malformed: bool = False,
) -> tuple[Examples, LoadReport]:
    """Read a file of labelled reviews; raise MalformedRow, or skip and count, on a bad row."""
    rows, report = read_dataset(path, fmt=fmt, rule=rule, skip_malformed=skip_malformed)
    labels = np.asarray([row.label for row in rows], dtype=np.int64)
    source = SourceFile(path=str(path), sha256=file_digest(path))
    return Examples(name, [row.text for row in rows], labels, (source,)), report


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
