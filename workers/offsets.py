"""The requests consumer's offsets: commit what is settled, skip what a rebalance took away,
and measure the lag behind the high watermark."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from workers.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class Offsets:
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics
        self._committed: dict[TopicPartition, int] = {}  # next offset, as committed
        self.last_commit = 0.0
        self._last_lag_check = 0.0

    async def commit(self, consumer: AIOKafkaConsumer, settled: dict[TopicPartition, int]) -> None:
        """Commit the settled offsets not committed yet. A failed commit after a rebalance
        is counted and logged: the new owner answers those records again (idempotent
        downstream)."""
        self.last_commit = time.monotonic()
        offsets = {tp: o for tp, o in settled.items() if self._committed.get(tp) != o}
        if not offsets:
            return
        assigned = consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in assigned}
        if len(mine) < len(offsets):
            # Fetched before a rebalance took those partitions away: the replies are out, and
            # the new owner answers the records again (at-least-once; idempotent downstream).
            log.info("not committing revoked partitions %s", sorted(set(offsets) - set(mine)))
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as exc:
            self._metrics.errors.labels(kind="commit").inc()
            log.warning("commit after a rebalance failed, the batch will be replayed: %s", exc)
            return
        self._committed.update(mine)

    def forget(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self._committed.pop(tp, None)

    def measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._last_lag_check < 1.0:
            return
        self._last_lag_check = now
        lag = 0
        assigned = consumer.assignment()
        for tp in assigned:
            try:
                highwater = consumer.highwater(tp)
            except (IllegalStateError, AssertionError):
                continue  # revoked meanwhile
            if highwater is not None and tp in self._committed:
                lag += max(0, highwater - self._committed[tp])
        self._metrics.consumer_lag.set(lag)
        self._metrics.assigned_partitions.set(len(assigned))


async def requests_lag(consumer: AIOKafkaConsumer | None, *, timeout_s: float = 1.0) -> int | None:
    """Records not consumed yet on the assigned partitions (high watermark - position, summed);
    None while unknown (not consuming, no fetch yet, or a rebalance under way)."""
    if consumer is None:
        return None
    lag = 0
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
            position = await asyncio.wait_for(consumer.position(tp), timeout=timeout_s)
        except (IllegalStateError, AssertionError, TimeoutError):
            return None
        if highwater is None:
            return None
        lag += max(0, highwater - position)
    return lag
