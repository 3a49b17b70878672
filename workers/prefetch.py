"""Fetching the next version before the alias names it.

The registry watcher announces the version it checked ahead of its move under the pseudo-alias
``<alias>~candidate`` (``registry_watcher.candidates``). The :class:`Prefetcher` has the source
download and verify that bundle (sha256) in the background, never loading or serving it, so
that when the alias moves the load reads it from disk (unchanged since verified, see
``workers.registry``) and the swap
costs only the session and the reference check. A failed prefetch costs nothing but the time:
it is logged and counted, and the move downloads the bundle as it always did (with retries).
One at a time, the newest announcement wins.
"""

from __future__ import annotations

import asyncio
import logging
import time

from contracts import ModelChanged
from workers.metrics import WorkerMetrics
from workers.models import ModelRefused, Prefetching

log = logging.getLogger(__name__)


class Prefetcher:
    def __init__(self, source: Prefetching, metrics: WorkerMetrics) -> None:
        self._source = source
        self._metrics = metrics
        self._wanted: ModelChanged | None = None
        self._changed = asyncio.Event()

    def want(self, event: ModelChanged) -> None:
        self._wanted = event
        self._changed.set()

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._wanted is not None:
                await self._fetch(self._wanted)

    async def _fetch(self, event: ModelChanged) -> None:
        count = self._metrics.model_prefetches.labels
        started = time.perf_counter()
        try:
            fetched = await asyncio.to_thread(self._source.prefetch, event)
        except Exception as exc:  # a prefetch never takes the worker down
            count(outcome="refused" if isinstance(exc, ModelRefused) else "failed").inc()
            log.warning("could not fetch version %s ahead of its move: %s", event.version, exc)
            return
        count(outcome="fetched" if fetched else "on_disk").inc()
        self._metrics.prefetched_version.set(
            float(event.version) if event.version.isdigit() else -1
        )
        if fetched:
            log.info(
                "fetched version %s (sha256 %s) ahead of its move in %.3f s",
                event.version,
                event.sha256[:12],
                time.perf_counter() - started,
            )
