"""Kafka at the worker's edges: clients built from settings, records turned into
:class:`~workers.batch.Record`, and the compacted models topic read as ModelChanged events.

:class:`ModelEvents` is shared with the registry watcher: both need "the latest event per
model name" from the compacted topic, read from the beginning without a consumer group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from tenacity import AsyncRetrying, RetryCallState, before_sleep_log, wait_exponential

from contracts import DecodeError, KafkaSettings, ModelChanged, decode
from workers.batch import Record

log = logging.getLogger(__name__)


class Startable(Protocol):
    async def start(self) -> Any: ...

    async def stop(self) -> Any: ...


S = TypeVar("S", bound=Startable)


async def connect(factory: Callable[[], S], *, what: str, give_up: Callable[[], bool]) -> S:
    """Start a client, retrying with backoff while the broker is away (services start in any
    order); ``give_up()`` ends the wait (a SIGTERM while waiting)."""

    def stop(state: RetryCallState) -> bool:
        return give_up()

    async for attempt in AsyncRetrying(
        stop=stop,
        wait=wait_exponential(multiplier=0.5, max=5),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            client = factory()
            try:
                await client.start()
            except BaseException:
                await client.stop()
                raise
            log.info("%s connected", what)
            return client
    raise AssertionError("unreachable")  # pragma: no cover


def producer(kafka: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """Every send is acknowledged by all in-sync replicas before its future resolves."""
    return AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=client_id,
        acks="all",
        # Replies leave as whole record batches (send_to_partitions): lingering adds only latency.
        linger_ms=0,
        # A batch of replies is ~100 KB: one request per partition, not one per 16 KB.
        max_batch_size=512 * 1024,
    )


async def send_to_partitions(
    producer: AIOKafkaProducer, topic: str, messages: Iterable[tuple[int, bytes | None, bytes]]
) -> list[asyncio.Future[Any]]:
    """Queue ``(partition, key, value)`` messages as one record batch per partition (split at
    the producer's ``max_batch_size``), in order; a future per batch resolves on its ack.

    Where the partition is known, this skips what ``send`` does per message (a partitioner
    call, an accumulator lookup, a future): a third of a worker's time per review went there.
    """
    builders: dict[int, Any] = {}
    futures: list[asyncio.Future[Any]] = []
    for partition, key, value in messages:
        builder = builders.get(partition)
        if builder is None:
            builder = builders[partition] = producer.create_batch()
        if builder.append(key=key, value=value, timestamp=None) is None:  # full: send it
            builder.close()
            futures.append(await producer.send_batch(builder, topic, partition=partition))
            builder = builders[partition] = producer.create_batch()
            builder.append(key=key, value=value, timestamp=None)  # an empty batch takes any
    for partition, builder in builders.items():
        builder.close()
        futures.append(await producer.send_batch(builder, topic, partition=partition))
    return futures


def to_record(message: Any) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
    )


class ModelEvents:
    """The compacted models topic: every partition, from the beginning, no consumer group."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str) -> None:
        self.topic = kafka.models_topic
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def start(self) -> None:
        await self._consumer.start()  # without a group: assigned every partition
        await self._consumer.seek_to_beginning()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def catch_up(self, *, timeout_s: float = 30) -> dict[str, ModelChanged]:
        """Read up to the end as it is now; the latest event per model name."""
        partitions = list(self._consumer.assignment())
        end = await self._consumer.end_offsets(partitions)
        latest: dict[str, ModelChanged] = {}
        for tp in partitions:
            while await self._consumer.position(tp) < end[tp]:
                for event in await self._fetch(timeout_s, tp):
                    latest[event.model_name] = event
        return latest

    async def fetch(self, timeout_s: float) -> list[ModelChanged]:
        """New events, in order, waiting at most ``timeout_s`` for the first."""
        return await self._fetch(timeout_s)

    async def _fetch(self, timeout_s: float, *partitions: Any) -> list[ModelChanged]:
        batches = await self._consumer.getmany(*partitions, timeout_ms=int(timeout_s * 1000))
        events = []
        for messages in batches.values():
            for message in messages:
                if message.value is None:
                    continue  # a tombstone: compaction's way to forget a model name
                try:
                    events.append(decode(message.value, ModelChanged))
                except DecodeError as exc:
                    log.error(
                        "skipping undecodable record %s[%d]@%d on the models topic: %s",
                        message.topic,
                        message.partition,
                        message.offset,
                        exc.reason,
                    )
        return events
