"""Time windows of the aggregates: epoch-aligned tumbling windows, in UTC.

The windowed state lives in PostgreSQL (see ``stats.db``), where it changes in the same
transaction as the records it counts; this is only the arithmetic of where a window starts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from contracts.statistics import GRANULARITIES, WINDOW_SECONDS, Granularity


def window_start(granularity: Granularity, at: datetime) -> datetime:
    """The start of the ``granularity`` window that holds ``at`` (an aware datetime)."""
    return _start(granularity, at.timestamp())


def window_starts(at: datetime) -> list[tuple[Granularity, datetime]]:
    """Per granularity, the start of its window that holds ``at`` (``at`` read once)."""
    epoch = at.timestamp()
    return [(g, _start(g, epoch)) for g in GRANULARITIES]


def _start(granularity: Granularity, epoch: float) -> datetime:
    return _utc(epoch - epoch % WINDOW_SECONDS[granularity])


@lru_cache(maxsize=1024)
def _utc(epoch: float) -> datetime:
    # Called per record, but a batch's records fall in a few windows: one datetime each.
    return datetime.fromtimestamp(epoch, UTC)
