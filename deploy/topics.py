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


async def wait_for_broker(settings: KafkaSettings, *, timeout_s: float = 120) -> None:
    """Ready means a metadata request answered, not that a port is open."""
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
                await admin.describe_cluster()
            finally:
                await admin.close()


async def ensure_topics(settings: KafkaSettings) -> list[str]:
    """Create every missing topic; returns the names created."""
    admin = AIOKafkaAdminClient(**settings.client())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in settings.topic_specs() if spec.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=1,
                        topic_configs=spec.config,
                    )
                    for spec in missing
                ]
            )
        for spec in missing:
            log.info("created topic %s (%d partitions)", spec.name, spec.partitions)
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
