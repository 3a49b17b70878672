"""The compacted models topic, followed: which model the registry watcher last announced.

Read like the workers read it: every partition from the beginning, no consumer group. Once the
reader has reached the end offsets it found when it connected, the deployment is known (none,
or the newest announcement) and then follows each new event. A lost connection keeps the last
known deployment and reads the topic again from the beginning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from contracts import DecodeError, KafkaSettings, ModelChanged, decode
from gateway.deployment import Deployment, Deployments, ModelState
from runtime.kafka import wait_for_kafka
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)


class ModelsTopic:
    def __init__(self, settings: KafkaSettings, *, client_id: str, supervisor: Supervisor) -> None:
        self._settings = settings
        self._supervisor = supervisor
        self._client_id = client_id
        self._board = Deployments()
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> Deployment:
        return self._board.current

    def changes(self) -> AsyncIterator[Deployment]:
        return self._board.changes()

    async def __aenter__(self) -> ModelsTopic:
        self._task = self._supervisor.start(self._run(), name="models-topic")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            await self._supervisor.stop(task)

    async def _run(self) -> None:
        s = self._settings
        # The request bus says "waiting for Kafka" for this process: this wait stays at DEBUG.
        await wait_for_kafka(s, topics=[s.models_topic], log=log, level=logging.DEBUG)
        while True:
            try:
                await self._follow()
            except (KafkaError, OSError) as exc:
                log.warning("reading %s failed (%r); reading it again", s.models_topic, exc)
                await asyncio.sleep(1)

    async def _follow(self) -> None:
        s = self._settings
        consumer = AIOKafkaConsumer(
            s.models_topic,
            bootstrap_servers=s.bootstrap_servers,
            client_id=f"{self._client_id}-models",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:  # start() inside: a cancel while it connects must still close the client
            await consumer.start()  # waits for the topic's metadata; no group: every partition
            partitions = sorted(consumer.assignment())
            if not partitions:  # never "caught up" with a topic whose partitions are unknown
                raise UnknownTopicOrPartitionError(s.models_topic)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            latest: dict[str, ModelChanged] = {}
            caught_up = False
            while True:
                if not caught_up:
                    positions = [await consumer.position(tp) for tp in partitions]
                    caught_up = all(
                        p >= end[tp] for p, tp in zip(positions, partitions, strict=True)
                    )
                if caught_up:
                    self._announce(Deployment.of(latest))
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        self._take(record, latest)
        finally:
            await consumer.stop()

    def _take(self, record: Any, latest: dict[str, ModelChanged]) -> None:
        if record.value is None:  # a tombstone: compaction's way to forget a model name
            if record.key is not None:
                latest.pop(record.key.decode(errors="replace"), None)
            return
        try:
            event = decode(record.value, ModelChanged)
        except DecodeError as exc:
            log.warning(
                "skipping undecodable record %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc.reason,
            )
            return
        latest[event.model_name] = event

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
