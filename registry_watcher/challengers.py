"""The challengers: aliases announced beside the serving one (``RS_WATCHER_SHADOW_ALIASES``,
default ``challenger``), which shadow workers follow.

Kept apart from the serving alias's path on purpose: a challenger answers no client, so it is
announced as the registry names it (``export shadow`` already refused a version whose gates
failed), and what the serving path does for a release never applies to it.

- The models topic is compacted by key: a challenger's events are keyed ``<model>@<alias>``
  (``contracts.topics.models_key``), so they never erase the serving event (bare model name).
- An alias that disappeared is news here (unlike the serving alias, whose workers keep serving):
  the watcher publishes a tombstone for the challenger's key, and its shadow workers stop
  shadowing. A tombstone needs no new message field, is how compaction forgets a key anyway,
  and is ignored by every reader that only wants the serving event.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from mlflow import MlflowClient
from prometheus_client import Counter

from contracts import ModelChanged, encode
from contracts.topics import models_key
from inference.registry import serving_version
from registry_watcher.changes import change
from registry_watcher.settings import Settings
from runtime.kafka import send_signed
from runtime.signing import Signer

log = logging.getLogger(__name__)


def withdrawn(published: ModelChanged | None, current: ModelChanged | None) -> bool:
    """True when a tombstone is due: a version was announced and the alias names none now."""
    return published is not None and current is None


class Challengers:
    """Polls each (model, challenger alias) and publishes what changed; ``published`` holds the
    last event per key, learnt from the models topic at start-up."""

    def __init__(
        self, settings: Settings, *, published: Counter, errors: Counter, signer: Signer | None
    ) -> None:
        self.settings = settings
        self._signer = signer
        self._published_counter = published  # the watcher's counters, shared
        self._errors_counter = errors
        self.published: dict[str, ModelChanged] = {}
        self._client: MlflowClient | None = None

    def targets(self) -> list[tuple[str, str]]:
        s = self.settings
        return [(n, a) for n in s.model_names for a in s.shadow_aliases if a != s.alias]

    def learn(self, latest: dict[str, ModelChanged]) -> None:
        """The models topic's last events (``ModelEvents.catch_up``): what was announced."""
        watched = self.targets()
        self.published = {key: e for key, e in latest.items() if (e.model_name, e.alias) in watched}

    async def poll(self, producer: AIOKafkaProducer | None) -> None:
        """Ask once per challenger; publish a move or a withdrawal. A registry that is away is
        the serving poll's to report: here it only costs this poll."""
        if producer is None:
            return
        for name, alias in self.targets():
            try:
                current = await asyncio.to_thread(self._serving, name, alias)
            except Exception as exc:
                log.debug("challenger %s@%s not polled: %r", name, alias, exc)
                return
            key = models_key(name, alias)
            published = self.published.get(key)
            if withdrawn(published, current):
                await self._send(producer, key, None, f"tombstone: {key} withdrawn")
                continue
            event = change(published, current)
            if event is not None:
                what = f"{event.reason}: {key} -> version {event.version}"
                await self._send(producer, key, event, what)

    def _serving(self, name: str, alias: str) -> ModelChanged | None:
        if self._client is None:
            uri = self.settings.mlflow_tracking_uri
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return serving_version(self._client, name, alias)

    async def _send(
        self, producer: AIOKafkaProducer, key: str, event: ModelChanged | None, what: str
    ) -> None:
        topic = self.settings.kafka.models_topic
        try:
            value = None if event is None else encode(event)
            await send_signed(producer, topic, key.encode(), value, self._signer)
        except KafkaError as exc:
            self._errors_counter.inc()
            log.warning("could not publish %s: %s; next poll tries again", what, exc)
            return
        if event is None:
            self.published.pop(key, None)
        else:
            self.published[key] = event
            self._published_counter.labels(model_name=event.model_name, reason=event.reason).inc()
        log.info("published %s", what)
