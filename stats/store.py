"""The port between the processor and its database, with its two kinds of failure.

Errors::

    StoreError
     ├── StoreUnavailable   transient (database away, restarting, deadlock): retry the same
     │                      batch later; nothing is acknowledged meanwhile
     └── RecordRejected     the database refuses this data for good (e.g. a NUL byte in a
                            text): the record goes to the dead-letter topic with the reason

Anything else is a bug or a broken schema: the processor stops without acknowledging, and
the records are read again after the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stats.aggregates import FeedbackRow, PredictionRow
from stats.shadow import ShadowRow


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot take the write now; the same write may succeed later."""


class RecordRejected(StoreError):
    """The database refuses this data and always will."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    """records stored now (the rest were already there: replays and retries)"""
    duplicates: int
    """records whose key was already stored: nothing changed for them"""
    labelled: int
    """predictions whose true label was set or corrected in this write (counted in accuracy)"""


class StatsStore(Protocol):
    async def write_predictions(self, batch: Sequence[PredictionRow]) -> WriteResult:
        """Store the batch and their aggregates in one transaction; idempotent per request_id."""
        ...

    async def write_feedback(self, batch: Sequence[FeedbackRow]) -> WriteResult:
        """Store the batch, pair them with their predictions, in one transaction; idempotent."""
        ...

    async def write_shadow_predictions(self, batch: Sequence[ShadowRow]) -> WriteResult:
        """Store a challenger's predictions; idempotent per (request_id, model_version)."""
        ...

    async def purge_unmatched(self, older_than_s: float) -> int:
        """Delete feedback that waited longer than this for its prediction; returns how many."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now."""
        ...


@dataclass(frozen=True)
class DriftCheck:
    """One check of the drift monitor: a row of ``drift_checks``."""

    model_version: str
    feature: str
    checked_at: datetime
    window_size: int
    score: float
    p_value: float | None
    alarm: bool
