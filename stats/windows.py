"""Time windows of the aggregates, as faust tumbling windows (epoch-aligned, UTC).

Faust is used here for what it is good at, the window arithmetic; the windowed state itself
lives in PostgreSQL (see ``stats.db``), where it changes in the same transaction as the records.
"""

from __future__ import annotations

from datetime import UTC, datetime

import faust

from stats.schema import GRANULARITIES, WINDOW_SECONDS, Granularity

WINDOWS: dict[Granularity, faust.TumblingWindow] = {
    granularity: faust.TumblingWindow(WINDOW_SECONDS[granularity]) for granularity in GRANULARITIES
}


def window_start(granularity: Granularity, at: datetime) -> datetime:
    """The start of the ``granularity`` window that holds ``at`` (an aware datetime)."""
    start, _end = WINDOWS[granularity].current(at.timestamp())
    return datetime.fromtimestamp(start, UTC)
