"""Is Kafka ready for this service? The broker answers, its topics exist and their leaders
answer, and (for a consumer group) the group coordinator is there.

A broker that has just started answers metadata requests before the local stack has created the
topics, and a fresh one has no ``__consumer_offsets`` until the first coordinator lookup: a client
started then logs "topic not found" or "coordinator not available" at ERROR, over and over. Probing
for exactly what the service needs first keeps those out of a normal start (``runtime.startup``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)

from contracts.topics import KafkaSettings
from runtime.startup import NotYet, Probe, wait_for

RETRIABLE = (KafkaError, OSError, TimeoutError, NotYet)


def kafka_probe(
    bootstrap_servers: str, *, topics: Sequence[str] = (), group: str | None = None
) -> Probe:
    async def probe() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="rs-startup-probe",
            request_timeout_ms=5000,
        )
        try:
            try:
                await admin.start()
            except KafkaConnectionError as exc:  # its message lists addresses: say it plainly
                raise NotYet("no broker answers yet") from exc
            partitions: list[TopicPartition] = []
            if topics:
                for topic in await admin.describe_topics(list(topics)):
                    if topic["error_code"]:
                        raise NotYet(f"topic {topic['topic']} does not exist yet")
                    if any(p["leader"] < 0 for p in topic["partitions"]):
                        raise NotYet(f"topic {topic['topic']} has no leader yet")
                    partitions += [TopicPartition(topic["topic"], p["partition"])
                                   for p in topic["partitions"]]  # fmt: skip
                await _leaders_answer(bootstrap_servers, partitions)
            if group is not None:
                # Also makes a fresh broker create __consumer_offsets.
                try:
                    await admin.find_coordinator(group)
                except CoordinatorNotAvailableError as exc:
                    raise NotYet(f"no coordinator for group {group} yet") from exc
        finally:
            await admin.close()

    return probe


async def _leaders_answer(bootstrap_servers: str, partitions: list[TopicPartition]) -> None:
    """Every partition's leader answers an offsets request: just after a topic is created,
    the metadata may name a leader that still says "not leader" for a moment."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id="rs-startup-probe",
        group_id=None,
        request_timeout_ms=5000,
    )
    try:
        await consumer.start()
        await consumer.end_offsets(partitions)
    except KafkaTimeoutError as exc:
        raise NotYet("the topics' leaders do not answer yet") from exc
    finally:
        await consumer.stop()


async def wait_for_kafka(
    settings: KafkaSettings,
    *,
    topics: Sequence[str] = (),
    group: str | None = None,
    log: logging.Logger,
    give_up: Callable[[], bool] | None = None,
    level: int = logging.INFO,
) -> bool:
    """Until Kafka serves ``topics`` (and ``group``): True, or False when ``give_up()``."""
    return await wait_for(
        "Kafka",
        settings.bootstrap_servers,
        kafka_probe(settings.bootstrap_servers, topics=topics, group=group),
        log=log,
        retry_on=RETRIABLE,
        give_up=give_up,
        level=level,
    )
