"""Create the topics with their partition counts and configs; auto-creation is off.

Run alone with ``python -m deploy.topics`` (a deployment's one-shot job); the local stack
calls :func:`ensure_topics` as soon as its broker answers.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay

from contracts.topics import KafkaSettings
from runtime.backoff import backoff

log = logging.getLogger(__name__)


# Copies of every topic on a cluster of three brokers or more; a write is acknowledged (acks=all)
# once all but one of them have it, so any one broker may die without losing it.
MAX_REPLICATION_FACTOR = 3


def min_insync_replicas(replication_factor: int) -> int:
    return max(1, replication_factor - 1)


async def wait_for_broker(
    settings: KafkaSettings, *, brokers: int = 1, timeout_s: float = 120
) -> None:
    """Ready means a metadata request answered, with ``brokers`` brokers registered, not that a
    port is open."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(timeout_s),
        wait=backoff(2),
        retry=retry_if_exception_type(Exception),
        reraise=True,
    ):
        with attempt:
            admin = AIOKafkaAdminClient(**settings.client(), request_timeout_ms=5000)
            await admin.start()
            try:
                registered = len((await admin.describe_cluster())["brokers"])
            finally:
                await admin.close()
            if registered < brokers:
                raise ConnectionError(f"{registered} of {brokers} brokers registered")


async def ensure_topics(settings: KafkaSettings) -> list[str]:
    """Create every missing topic; returns the names created. Replication factor: the brokers
    the cluster has, up to three (one on a single broker), with min.insync.replicas one less."""
    admin = AIOKafkaAdminClient(**settings.client())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in settings.topic_specs() if spec.name not in existing]
        brokers = len((await admin.describe_cluster())["brokers"])
        factor = min(MAX_REPLICATION_FACTOR, brokers)
        replicated = {"min.insync.replicas": str(min_insync_replicas(factor))} if factor > 1 else {}
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=factor,
                        topic_configs=spec.config | replicated,
                    )
                    for spec in missing
                ]
            )
        for spec in missing:
            log.info(
                "created topic %s (%d partitions, %d replicas)", spec.name, spec.partitions, factor
            )
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def main() -> None:
    settings = KafkaSettings()
    await wait_for_broker(settings)
    created = await ensure_topics(settings)
    log.info("topics ready (%d created)", len(created))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
