"""Time windows of the aggregates: epoch-aligned tumbling windows, in UTC.

The windowed state lives in PostgreSQL (see ``stats.db``), where it changes in the same
transaction as the records it counts; this is only the arithmetic of where a window starts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.statistics import WINDOW_SECONDS, Granularity


def window_start(granularity: Granularity, at: datetime) -> datetime:
    """The start of the ``granularity`` window that holds ``at`` (an aware datetime)."""
    seconds = WINDOW_SECONDS[granularity]
    epoch = at.timestamp()
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)
