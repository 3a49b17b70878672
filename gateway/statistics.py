"""Statistics as the gateway sees them: the StatsStore port, and the live feed for the UI.

The stats processor writes PostgreSQL; the gateway only reads. :class:`StatsFeed` polls the
store while at least one WebSocket listens, and wakes every listener when the numbers change,
so the panel follows traffic from any client, replica or Kafka producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

from contracts import Prediction
from gateway.errors import StatsUnavailable
from gateway.schemas import (
    DriftOut,
    DriftQuery,
    LiveStats,
    RecentListOut,
    SeriesPoint,
    ShadowOut,
    ShadowQuery,
    SummaryOut,
    WindowsOut,
    WindowsQuery,
)
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)


class StatsStore(AbstractAsyncContextManager["StatsStore", None], Protocol):
    """Opened and closed with ``async with``; every query raises StatsUnavailable when down."""

    async def summary(self) -> SummaryOut: ...

    async def windows(self, query: WindowsQuery) -> WindowsOut: ...

    async def recent(self, limit: int) -> RecentListOut: ...

    async def drift(self, query: DriftQuery) -> DriftOut: ...

    async def shadow(self, query: ShadowQuery) -> ShadowOut:
        """Each challenger in shadow against production: agreement and live accuracy."""
        ...

    async def series(self, minutes: int) -> list[SeriesPoint]:
        """Minute windows of the last ``minutes``, every model version summed."""
        ...

    async def check(self) -> bool: ...

    async def answer(self, request_id: str, within_s: float) -> Prediction | None:
        """The prediction stored for a request submitted within the last ``within_s``: the
        answer to a retry with the same Idempotency-Key that this replica does not remember."""
        ...


class StatsFeed:
    def __init__(
        self,
        store: StatsStore,
        *,
        interval_s: float,
        window_minutes: int,
        supervisor: Supervisor,
    ) -> None:
        self._store = store
        self._supervisor = supervisor
        self._interval_s = interval_s
        self._window_minutes = window_minutes
        self._changed = asyncio.Condition()
        self._latest: LiveStats | None = None
        self._version = 0
        self._listeners = 0
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StatsFeed:
        self._task = self._supervisor.start(self._run(), name="stats-feed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await self._supervisor.stop(task)

    async def subscribe(self) -> AsyncIterator[LiveStats]:
        """The latest numbers at once (when known), then every change."""
        self._listeners += 1
        self._wanted.set()
        seen = 0
        try:
            while True:
                async with self._changed:

                    def changed(last: int = seen) -> bool:
                        return self._version != last

                    await self._changed.wait_for(changed)
                    seen, latest = self._version, self._latest
                assert latest is not None
                yield latest
        finally:
            self._listeners -= 1
            if self._listeners == 0:
                self._wanted.clear()

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            await self._publish(await self.snapshot())
            await asyncio.sleep(self._interval_s)  # the poll period, not a synchronisation

    async def snapshot(self) -> LiveStats:
        now = datetime.now(UTC)
        try:
            summary = await self._store.summary()
            series = await self._store.series(self._window_minutes)
        except StatsUnavailable as exc:
            previous = self._latest
            return LiveStats(
                available=False,
                message=exc.message,
                summary=previous.summary if previous else None,
                series=previous.series if previous else [],
                updated_at=previous.updated_at if previous else now,
            )
        return LiveStats(available=True, summary=summary, series=series, updated_at=now)

    async def _publish(self, snapshot: LiveStats) -> None:
        latest = self._latest
        if latest is not None and _same(latest, snapshot):
            return
        async with self._changed:
            self._latest = snapshot
            self._version += 1
            self._changed.notify_all()


def _same(a: LiveStats, b: LiveStats) -> bool:
    return a.model_dump(exclude={"updated_at"}) == b.model_dump(exclude={"updated_at"})
