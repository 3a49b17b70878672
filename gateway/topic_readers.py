"""What the gateway's topic readers share (the models topic, the fleet, the alerts): tasks of the
gateway's supervisor from ``async with`` to its end, each following one topic and reading it
again from the start after a lost connection, keeping what it knew meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Self

from aiokafka.errors import KafkaError

from contracts import KafkaSettings
from runtime.kafka import wait_for_kafka
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)

Follow = Callable[[], Awaitable[None]]  # reads its topic until the connection fails


class TopicReaders:
    def __init__(self, settings: KafkaSettings, *, client_id: str, supervisor: Supervisor) -> None:
        self._settings = settings
        self._client_id = client_id
        self._supervisor = supervisor
        self._tasks: list[asyncio.Task[None]] = []

    def readers(self) -> Mapping[str, tuple[str, Follow]]:
        """Each task's name, with the topic it follows and how."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._tasks = [
            self._supervisor.start(self._keep_reading(topic, follow), name=name)
            for name, (topic, follow) in self.readers().items()
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tasks, self._tasks = self._tasks, []
        if tasks:
            await self._supervisor.stop(*tasks)

    async def _keep_reading(self, topic: str, follow: Follow) -> None:
        # The request bus says "waiting for Kafka" for this process: this wait stays at DEBUG.
        await wait_for_kafka(self._settings, topics=[topic], log=log, level=logging.DEBUG)
        while True:
            try:
                await follow()
            except (KafkaError, OSError) as exc:
                log.warning("reading %s failed (%r); reading it again", topic, exc)
                await asyncio.sleep(1)
