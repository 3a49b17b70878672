"""The stats consumer's seek back to the committed offsets, on a real broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts import KafkaSettings
from stats.fetcher import seek_to_committed_or_earliest
from tests.conftest import unique


async def _produce(kafka: KafkaSettings, topic: str, partition: int, count: int) -> None:
    producer = AIOKafkaProducer(**kafka.client())
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, f"{partition}-{n}".encode(), partition=partition)
    finally:
        await producer.stop()


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, until: int) -> None:
    async with asyncio.timeout(30):
        while await consumer.position(tp) < until:
            await consumer.getmany(tp, timeout_ms=500)


async def test_a_partition_never_committed_is_read_again_from_its_start(
    kafka: KafkaSettings,
) -> None:
    """Records read but not stored are read again after a seek, committed or not: faust seeks so
    after a rebalance and then drops what it had queued."""
    topic = kafka.predictions_topic
    never, committed = TopicPartition(topic, 0), TopicPartition(topic, 1)
    await _produce(kafka, topic, 0, 5)
    await _produce(kafka, topic, 1, 4)
    consumer = AIOKafkaConsumer(
        **kafka.client(),
        group_id=unique("seek"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([never, committed])
        await _read(consumer, never, 5)
        await _read(consumer, committed, 4)
        await consumer.commit({committed: 2})

        # Why the function exists: aiokafka's own seek leaves the partition without a commit
        # where it had read to, so what was read and dropped there would never come back.
        assert await consumer.seek_to_committed() == {never: None, committed: 2}
        assert await consumer.position(never) == 5

        assert await seek_to_committed_or_earliest(consumer) == {never: None, committed: 2}
        assert await consumer.position(never) == 0
        assert await consumer.position(committed) == 2
        records = await consumer.getmany(never, timeout_ms=5000)
        assert [r.value for r in records[never]][:1] == [b"0-0"]
    finally:
        await consumer.stop()
