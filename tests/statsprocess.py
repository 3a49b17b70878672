"""The real stats processor (``python -m stats``) as a child, with what the tests ask of it.

The child itself is ``deploy.local.processes.StatsProcess`` (the benchmarks run it too); here are
the Kafka offsets that say the processor has caught up.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from contracts.topics import KafkaSettings
from deploy.local.processes import StatsProcess, kafka_env, wait_for

__all__ = ["StatsProcess", "caught_up", "committed_offsets", "kafka_env", "wait_for"]


async def partitions(kafka: KafkaSettings, topics: Iterable[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**kafka.client())
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    found = [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        for p in topic["partitions"]
    ]
    if not found:
        raise LookupError(f"no partitions found for {list(topics)}")
    return sorted(found)


async def end_offsets(kafka: KafkaSettings, topics: Iterable[str]) -> dict[TopicPartition, int]:
    tps = await partitions(kafka, topics)
    consumer = AIOKafkaConsumer(**kafka.client())
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def committed_offsets(kafka: KafkaSettings, group_id: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**kafka.client())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def caught_up(kafka: KafkaSettings, group_id: str) -> bool:
    """The group has committed every record of the predictions and feedback topics."""
    ends = await end_offsets(kafka, [kafka.predictions_topic, kafka.feedback_topic])
    try:
        committed = await committed_offsets(kafka, group_id)
    except GroupCoordinatorNotAvailableError:
        return False  # the broker is still creating __consumer_offsets (a fresh stack)
    return all(committed.get(tp, 0) >= end for tp, end in ends.items())
