"""The compacted models topic, followed: which model the registry watcher last announced.

Read as the workers read it (``runtime.kafka.ModelEvents``): every partition from the beginning,
no consumer group. Once the reader has reached the end offsets it found when it connected, the
deployment is known (none, or the newest announcement) and then follows each new event; a
tombstone forgets its key. Only the serving alias's events count: a challenger's (keyed
``<model>@<alias>``) is no deployment. A lost connection keeps the last known deployment and
reads the topic again from the beginning.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

from contracts import KafkaSettings
from gateway.deployment import Deployment, Deployments, ModelState
from gateway.topic_readers import Follow, TopicReaders
from runtime.kafka import ModelEvents, keep_latest, serving_only
from runtime.signing import Verifier
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)


class ModelsTopic(TopicReaders):
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
        self._board = Deployments()

    @property
    def current(self) -> Deployment:
        return self._board.current

    def changes(self) -> AsyncIterator[Deployment]:
        return self._board.changes()

    def readers(self) -> Mapping[str, tuple[str, Follow]]:
        return {"models-topic": (self._settings.models_topic, self._follow)}

    async def _follow(self) -> None:
        s = self._settings
        events = ModelEvents(s, client_id=f"{self._client_id}-models", verifier=self._verifier)
        try:  # start() inside: a cancel while it connects must still close the client
            # Waits for the topic's metadata (UnknownTopicOrPartitionError without partitions).
            await events.start()
            latest = await events.catch_up(timeout_s=1, forget=True)
            while True:
                # A challenger in shadow answers no client: never the gateway's deployment.
                self._announce(Deployment.of(serving_only(latest)))
                keep_latest(latest, await events.read(timeout_s=1), forget=True)
        finally:
            await events.stop()

    def _announce(self, deployment: Deployment) -> None:
        if deployment == self._board.current:
            return
        if deployment.state is ModelState.NONE:
            log.info(
                "no model announced on %s yet: classifications answer 503 no_model until one is",
                self._settings.models_topic,
            )
        else:
            log.info("model deployed: %s version %s", deployment.model_name, deployment.version)
        self._board.set(deployment)
