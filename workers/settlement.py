"""The settlement chain: which requests' offsets may be committed, and when.

A batch is *settled* when the broker acknowledged every reply and dead letter it produced and
the batch before it is settled too; only then do its offsets (last + 1 per partition) become
committable. Batches are pipelined (the next one is classified while this one's acks come), so
settlements run as tasks, chained in batch order. A failed acknowledgement fails its batch and
every later one, and is raised to the loop by :meth:`Settlements.settle` or :meth:`drain`,
which stops the worker before any later commit: at-least-once, never at-most-once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition

from runtime.records import Record
from workers.batch import next_offsets


class Settlements:
    def __init__(self) -> None:
        self._unsettled: deque[asyncio.Task[None]] = deque()  # oldest first
        self._settled: dict[TopicPartition, int] = {}  # next offset, replies acknowledged

    def __len__(self) -> int:
        return len(self._unsettled)

    def add(self, sends: Sequence[asyncio.Future[Any]], records: Sequence[Record]) -> None:
        """A batch whose replies were handed to the producer: it settles after ``sends``."""
        previous = self._unsettled[-1] if self._unsettled else None
        self._unsettled.append(asyncio.create_task(self._settle_one(previous, sends, records)))

    async def settle(self, *, keep: int) -> None:
        """Wait for the oldest until at most ``keep`` are unsettled (a failure raises here)."""
        while len(self._unsettled) > keep or (self._unsettled and self._unsettled[0].done()):
            await self._unsettled.popleft()

    async def drain(self) -> None:
        """Let every settlement finish, then raise the first failure, if any."""
        tasks = list(self._unsettled)
        self._unsettled.clear()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def wait(self) -> None:
        """Wait for every batch sent to settle or fail, raising nothing (a rebalance: the
        loop raises the failure)."""
        if self._unsettled:
            await asyncio.wait(self._unsettled)

    def take(self) -> dict[TopicPartition, int]:
        """The committable offsets settled since the last call."""
        settled, self._settled = self._settled, {}
        return settled

    async def _settle_one(
        self,
        previous: asyncio.Task[None] | None,
        sends: Sequence[asyncio.Future[Any]],
        records: Sequence[Record],
    ) -> None:
        await asyncio.gather(*sends)  # every reply acknowledged (acks=all) before the commit
        if previous is not None:
            await previous  # settles in batch order; if it failed, this batch fails too
        for (topic, partition), offset in next_offsets(records).items():
            self._settled[TopicPartition(topic, partition)] = offset
