"""Following the serving model: the compacted models topic first, the registry when it is silent.

:class:`ModelFollower` hands every ModelChanged for this worker's model to the
:class:`~workers.reload.Reloader` (which loads it through the :class:`~workers.models.ModelSlot`,
retrying with backoff, and the slot swaps it in between batches). Until a model is in service,
:meth:`ModelFollower.wait_for_model` also asks the registry where the alias points, every
``registry_poll_interval_s``: a worker started before any event, or after the topic was
compacted away, still finds its model.

The version the watcher announced as next (``<model>@<alias>~candidate``,
``registry_watcher.candidates``) goes to the :class:`~workers.prefetch.Prefetcher`, which
fetches its bundle ahead of the move; it is never served from that announcement.

A shadow worker follows the challenger alias (key ``<model>@challenger``): when the challenger
is withdrawn the watcher publishes a tombstone for that key, and the shadow worker drops its
model and stops shadowing (a serving worker ignores tombstones: it keeps serving what it has).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaError

from contracts import ModelChanged
from contracts.topics import candidate_alias, models_key
from runtime.kafka import Forgotten, ModelEvents
from runtime.startup import http_ok, wait_for
from workers.metrics import WorkerMetrics
from workers.prefetch import Prefetcher
from workers.reload import Reloader
from workers.settings import Settings

log = logging.getLogger(__name__)


class ModelFollower:
    def __init__(
        self,
        reloader: Reloader,
        settings: Settings,
        metrics: WorkerMetrics,
        *,
        stopping: asyncio.Event,
        registry_over_http: bool,
        withdraw_on_tombstone: bool = False,
        prefetcher: Prefetcher | None = None,
    ) -> None:
        self.reloader = reloader
        self.slot = reloader.slot
        self._settings = settings
        self._metrics = metrics
        self._stopping = stopping
        self._registry_over_http = registry_over_http
        self._withdraw_on_tombstone = withdraw_on_tombstone
        self._key = models_key(settings.model_name, settings.model_alias)
        self._prefetcher = prefetcher
        self._next_key = models_key(settings.model_name, candidate_alias(settings.model_alias))
        self._caught_up = asyncio.Event()
        # Said "waiting for MLflow" at start-up: say so once it first answers.
        self._registry_waited = self._registry_answered = False

    async def follow(self, events: ModelEvents) -> None:
        """Read the topic to its end (the current event), then every new event, forever."""
        latest = await events.catch_up(forget=self._withdraw_on_tombstone)
        event = latest.get(self._key)
        upcoming = latest.get(self._next_key)
        if upcoming is not None and self._prefetcher is not None:
            self._prefetcher.want(upcoming)
        if event is not None and self.slot.concerns(event):
            log.info("models topic names version %s", event.version)
            await self._registry_up()
            self.reloader.want(event)
        self._caught_up.set()  # only now may the registry be asked (if nothing is wanted)
        while True:
            try:
                batch = await events.read(timeout_s=1.0)
            except KafkaError as exc:
                self._metrics.errors.labels(kind="models_topic").inc()
                log.warning("models topic: %s; retrying", exc)
                await asyncio.sleep(1)
                continue
            ahead = [e for e in batch if isinstance(e, ModelChanged) and self._next(e)]
            if ahead and self._prefetcher is not None:
                self._prefetcher.want(ahead[-1])
            mine = [e for e in batch if self._concerns(e)]
            if not mine:  # only the newest matters; older ones in the same fetch are superseded
                continue
            newest = mine[-1]
            if isinstance(newest, Forgotten):
                self.reloader.withdraw()
            else:
                self.reloader.want(newest)

    def _next(self, event: ModelChanged) -> bool:
        return models_key(event.model_name, event.alias) == self._next_key

    def _concerns(self, event: ModelChanged | Forgotten) -> bool:
        if isinstance(event, Forgotten):
            return self._withdraw_on_tombstone and event.key == self._key
        return self.slot.concerns(event)

    async def _registry_up(self) -> None:
        """The bundle comes from MLflow's artifact store, and at start-up MLflow may still be
        coming up (the stack starts in any order): wait for it rather than refuse the version."""
        uri = self._settings.mlflow_tracking_uri
        if self._registry_over_http and uri.startswith(("http://", "https://")):
            await wait_for(
                "MLflow",
                uri,
                http_ok(f"{uri.rstrip('/')}/health"),
                log=log,
                retry_on=OSError,
                give_up=self._stopping.is_set,
            )
            self._registry_answered = True

    async def wait_for_model(self) -> bool:
        """Until a model is in service (True) or the worker stops (False)."""
        s = self._settings
        stopping = self._stopping
        await first(self._caught_up.wait(), stopping.wait())
        said = False  # say it once, not every poll
        while not stopping.is_set() and self.slot.current is None:
            # The registry is asked only while no version from the models topic is being tried
            # (the reloader retries that one itself).
            if not self.reloader.trying:
                event = await self._ask_registry(quiet=said)
                if event is not None:
                    self.reloader.want(event, from_registry=True)
            if self.slot.current is None:
                log.log(
                    logging.DEBUG if said else logging.INFO,
                    "not ready: no model for %s@%s yet; waiting for the models topic and asking"
                    " the registry every %.0fs",
                    s.model_name,
                    s.model_alias,
                    s.registry_poll_interval_s,
                )
                said = True
                await first(
                    self.slot.ready.wait(), stopping.wait(), limit_s=s.registry_poll_interval_s
                )
        return self.slot.current is not None and not stopping.is_set()

    async def _ask_registry(self, *, quiet: bool) -> ModelChanged | None:
        s = self._settings
        try:
            event = await asyncio.to_thread(self.slot.source.serving, s.model_name, s.model_alias)
        except Exception as exc:
            # At start-up MLflow may still be coming up (the stack starts in any order).
            self._registry_waited = True
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "waiting for MLflow at %s (%s: %.200s)",
                s.mlflow_tracking_uri,
                type(exc).__name__,
                exc,
            )
            return None
        if self._registry_waited and not self._registry_answered:
            log.info("connected to MLflow at %s", s.mlflow_tracking_uri)
        self._registry_answered = True
        return event


async def first(*waits: Any, limit_s: float | None = None) -> None:
    """Return when the first of the awaitables finishes (or the timeout passes)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
