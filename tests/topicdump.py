"""Read every record a topic holds now: how tests look at what a producer wrote."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import KafkaSettings


async def dump_topic(kafka: KafkaSettings, topic: str) -> list[Any]:
    """All records up to the end offsets at the time of the call, ordered by timestamp."""
    consumer = AIOKafkaConsumer(**kafka.client(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(kafka, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=10_000)
            assert batches, f"{topic}: records up to {ends} were not readable"
            for tp, batch in batches.items():
                records.extend(r for r in batch if r.offset < ends[tp])
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset))
    finally:
        await consumer.stop()


async def _partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    """A topic created a moment ago may take a moment to show its partitions."""
    admin = AIOKafkaAdminClient(**kafka.client())
    await admin.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            (described,) = await admin.describe_topics([topic])
            if described["error_code"] == 0 and described["partitions"]:
                return [p["partition"] for p in described["partitions"]]
            assert time.monotonic() < deadline, f"{topic} has no partitions: {described}"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
