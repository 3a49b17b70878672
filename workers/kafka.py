"""Kafka at the worker's edge, beyond what ``runtime.kafka`` gives every service: a producer
tuned for whole batches of replies, and the batches themselves, one per partition."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

import runtime.kafka
from contracts import KafkaSettings


def producer(kafka: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    return runtime.kafka.producer(
        kafka,
        client_id=client_id,
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
