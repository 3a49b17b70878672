"""The fleet, followed: what every worker reports it serves, beside what the models topic names.

``GET /v1/admin/fleet`` and the chat's Fleet panel show both: each worker's report from the
compacted fleet topic (``runtime.fleet.FleetReader``) and, per model, the version the registry
watcher last announced on the models topic, with whether every live worker acknowledged it.
Both topics are read like the models topic elsewhere: every partition from the beginning, no
consumer group, read again from the beginning after a lost connection (the last view is kept
meanwhile).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from contracts import KafkaSettings, ModelChanged
from contracts.topics import is_candidate
from gateway.topic_readers import Follow, TopicReaders
from runtime.fleet import FleetReader, FleetView
from runtime.kafka import ModelEvents, keep_latest
from runtime.signing import Verifier
from runtime.tasks import Supervisor


class FleetFeed(AbstractAsyncContextManager["FleetFeed", None], Protocol):
    """Started and stopped with ``async with``."""

    @property
    def view(self) -> FleetView: ...

    @property
    def announced(self) -> Mapping[str, ModelChanged]:
        """The latest ModelChanged per model name on the models topic."""
        ...


class FleetTopics(TopicReaders):
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str,
        supervisor: Supervisor,
        verifier: Verifier,
    ) -> None:
        super().__init__(settings, client_id=client_id, supervisor=supervisor)
        self._verifier = verifier
        self.view = FleetView()
        self.announced: Mapping[str, ModelChanged] = {}

    def readers(self) -> Mapping[str, tuple[str, Follow]]:
        s = self._settings
        return {
            "fleet-topic": (s.fleet_topic, self._follow_fleet),
            "fleet-models-topic": (s.models_topic, self._follow_models),
        }

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
