"""The worker's batched send path on the real broker: partitions, order and batch splits."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from contracts import KafkaSettings
from tests.topicdump import dump_topic
from workers.kafka import send_to_partitions


async def test_each_message_lands_in_its_partition_in_order_across_batch_splits(
    kafka: KafkaSettings,
) -> None:
    partitions = kafka.predictions_partitions
    # Small producer batches: 60 messages of ~100 bytes split into several batches per partition.
    producer = AIOKafkaProducer(**kafka.client(), acks="all", max_batch_size=1024)
    await producer.start()
    try:
        messages = [
            (i % partitions, f"k{i}".encode(), b"v" * 100 + str(i).encode()) for i in range(60)
        ]
        futures = await send_to_partitions(producer, kafka.predictions_topic, messages)
        assert len(futures) > partitions  # split at max_batch_size
        await asyncio.gather(*futures)  # every batch acknowledged
    finally:
        await producer.stop()

    records = await dump_topic(kafka, kafka.predictions_topic)
    for partition in range(partitions):
        landed = sorted((r for r in records if r.partition == partition), key=lambda r: r.offset)
        expected = [(key, value) for p, key, value in messages if p == partition]
        assert [(r.key, r.value) for r in landed] == expected
