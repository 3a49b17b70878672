"""The fleet, followed: what every worker reports it serves, beside what the models topic names.

``GET /v1/admin/fleet`` and the chat's Fleet panel show both: each worker's report from the
compacted fleet topic (``runtime.fleet.FleetReader``) and, per model, the version the registry
watcher last announced on the models topic, with whether every live worker acknowledged it.
Both topics are read like the models topic elsewhere: every partition from the beginning, no
consumer group, read again from the beginning after a lost connection (the last view is kept
meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Protocol, Self

from aiokafka.errors import KafkaError

from contracts import KafkaSettings, ModelChanged
from contracts.topics import is_candidate
from runtime.fleet import FleetReader, FleetView
from runtime.kafka import ModelEvents, keep_latest, wait_for_kafka
from runtime.signing import Verifier
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)


class FleetFeed(Protocol):
    """Started and stopped with ``async with``."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @property
    def view(self) -> FleetView: ...

    @property
    def announced(self) -> Mapping[str, ModelChanged]:
        """The latest ModelChanged per model name on the models topic."""
        ...


class FleetTopics:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str,
        supervisor: Supervisor,
        verifier: Verifier,
    ) -> None:
        self._settings = settings
        self._verifier = verifier
        self._client_id = client_id
        self._supervisor = supervisor
        self.view = FleetView()
        self.announced: Mapping[str, ModelChanged] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> FleetTopics:
        s = self._settings
        self._tasks = [
            self._supervisor.start(
                self._keep_reading(s.fleet_topic, self._follow_fleet), name="fleet-topic"
            ),
            self._supervisor.start(
                self._keep_reading(s.models_topic, self._follow_models), name="fleet-models-topic"
            ),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, []
        if tasks:
            await self._supervisor.stop(*tasks)

    async def _keep_reading(self, topic: str, follow: Callable[[], Awaitable[None]]) -> None:
        # The request bus says "waiting for Kafka" for this process: this wait stays at DEBUG.
        await wait_for_kafka(self._settings, topics=[topic], log=log, level=logging.DEBUG)
        while True:
            try:
                await follow()
            except (KafkaError, OSError) as exc:
                log.warning("reading %s failed (%r); reading it again", topic, exc)
                await asyncio.sleep(1)

    async def _follow_fleet(self) -> None:
        reader = FleetReader(self._settings, client_id=f"{self._client_id}-fleet")
        try:  # start() inside: a cancel while it connects must still close the client
            await reader.start()
            self.view = await reader.catch_up(timeout_s=1)
            while True:
                self.view = await reader.read(timeout_s=1)
        finally:
            await reader.stop()

    async def _follow_models(self) -> None:
        events = ModelEvents(
            self._settings, client_id=f"{self._client_id}-fleet-models", verifier=self._verifier
        )
        try:
            await events.start()
            latest = await events.catch_up(timeout_s=1, forget=True)
            while True:
                # A next version announced ahead of its move is no deployment (contracts.topics).
                self.announced = {k: e for k, e in latest.items() if not is_candidate(e.alias)}
                keep_latest(latest, await events.read(timeout_s=1), forget=True)
        finally:
            await events.stop()
