"""The fleet's acknowledgement: what every worker says it serves, read from the fleet topic.

Each worker publishes a :class:`~contracts.WorkerStatus` keyed by its id on the compacted fleet
topic, on every change and every ``heartbeat_s``. :class:`FleetReader` reads that topic from the
beginning (every partition, no consumer group, like the models topic) into the latest report per
worker and keeps following it; :func:`acknowledged` says whether every live worker serves a
version. The gateway shows it (``GET /v1/admin/fleet``), ``python -m export promote --wait-s``
waits for it, and the registry watcher can roll back when it does not come in time: so this
module depends on nothing but ``contracts`` and Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import UnknownTopicOrPartitionError

from contracts import DecodeError, KafkaSettings, WorkerState, WorkerStatus, decode
from contracts.messages import utc_now

log = logging.getLogger(__name__)

# A worker that missed this many heartbeats is gone (killed, partitioned away): it no longer
# holds a promotion up.
MISSED_HEARTBEATS = 3


def seconds_since(status: WorkerStatus, now: datetime) -> float:
    return max(0.0, (now - status.reported_at).total_seconds())


def is_live(status: WorkerStatus, now: datetime) -> bool:
    """Reported within ``MISSED_HEARTBEATS`` heartbeats, and not stopped."""
    if status.state is WorkerState.STOPPED:
        return False
    return seconds_since(status, now) <= MISSED_HEARTBEATS * status.heartbeat_s


@dataclass(frozen=True)
class FleetView:
    """The latest report of every worker that ever reported (and was not forgotten)."""

    workers: Mapping[str, WorkerStatus] = field(default_factory=dict)

    def live(self, now: datetime | None = None) -> list[WorkerStatus]:
        at = now or utc_now()
        return [s for s in self.workers.values() if is_live(s, at)]


def acknowledged(
    view: FleetView,
    model_name: str,
    alias: str,
    version: str,
    *,
    now: datetime | None = None,
) -> tuple[bool, list[str]]:
    """Whether every live worker of ``model_name@alias`` serves ``version``, and the ids of
    those that do not yet (sorted).

    An empty fleet acknowledges nothing: with every worker down, a promotion is not complete.
    """
    at = now or utc_now()
    fleet = [
        s
        for s in view.workers.values()
        if s.model_name == model_name and s.alias == alias and is_live(s, at)
    ]
    pending = sorted(s.worker_id for s in fleet if s.version != version)
    return bool(fleet) and not pending, pending


class FleetReader:
    """The fleet topic, read from the beginning and followed: :attr:`view` is the latest report
    per worker. A tombstone (a key without a value) forgets its worker; a record that does not
    decode is logged and skipped."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str) -> None:
        self.topic = kafka.fleet_topic
        self._workers: dict[str, WorkerStatus] = {}
        self._consumer = AIOKafkaConsumer(
            self.topic,
            **kafka.client(),
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    @property
    def view(self) -> FleetView:
        return FleetView(dict(self._workers))

    async def start(self) -> None:
        """Connect and read from the beginning; on any failure the client is closed again."""
        try:
            await self._consumer.start()
            if not self._consumer.assignment():
                raise UnknownTopicOrPartitionError(self.topic)
            await self._consumer.seek_to_beginning()
        except BaseException:
            await self._consumer.stop()
            raise

    async def stop(self) -> None:
        await self._consumer.stop()

    async def catch_up(self, *, timeout_s: float = 30) -> FleetView:
        """Read up to the end as it is now."""
        partitions = sorted(self._consumer.assignment())
        end = await self._consumer.end_offsets(partitions)
        for tp in partitions:
            while await self._consumer.position(tp) < end[tp]:
                await self.read(timeout_s)
        return self.view

    async def read(self, timeout_s: float) -> FleetView:
        """Take what arrived, waiting at most ``timeout_s`` for the first record."""
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000))
        for messages in batches.values():
            for message in messages:
                self._take(message)
        return self.view

    def _take(self, message: Any) -> None:
        if message.value is None:  # a tombstone: compaction's way to forget a worker
            if message.key is not None:
                self._workers.pop(message.key.decode(errors="replace"), None)
            return
        try:
            status = decode(message.value, WorkerStatus)
        except DecodeError as exc:
            log.error(
                "skipping undecodable record %s[%d]@%d on the fleet topic: %s",
                message.topic,
                message.partition,
                message.offset,
                exc.reason,
            )
            return
        self._workers[status.worker_id] = status
