"""The watcher announces the challenger beside production, never over it, and withdraws it.

On the real compacted models topic: the serving event keeps the bare model-name key (what every
existing reader and old record knows), the challenger's is ``<model>@challenger``, and removing
the challenger alias publishes a tombstone for that key only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from contracts import KafkaSettings
from deploy.local.launcher import LocalStack
from registry_watcher.service import Watcher
from registry_watcher.settings import Settings
from runtime.kafka import ModelEvents, serving_only
from runtime.signing import Verifier
from tests.serving import eventually, serving_and_next, unique


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Watcher]:
    async with Watcher(settings) as watcher:
        task = asyncio.create_task(watcher.run())
        try:
            yield watcher
        finally:
            watcher.stop()
            await asyncio.wait_for(task, timeout=30)


async def records(kafka: KafkaSettings) -> list[tuple[str, str | None]]:
    """Every record's key and (for an event) its alias and version, tombstones as None."""
    consumer = AIOKafkaConsumer(
        kafka.models_topic,
        **kafka.client(),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        found: list[tuple[str, str | None]] = []
        while batch := await consumer.getmany(timeout_ms=500):
            for messages in batch.values():
                for m in messages:
                    value = None if m.value is None else m.value.decode()
                    found.append((m.key.decode(), value))
        return found
    finally:
        await consumer.stop()


async def latest(kafka: KafkaSettings) -> dict[str, str]:
    events = ModelEvents(kafka, client_id=unique("test-reader"), verifier=Verifier({}))
    await events.start()
    try:
        return {k: e.version for k, e in (await events.catch_up(forget=True)).items()}
    finally:
        await events.stop()


async def test_challenger_beside_production_then_withdrawn(
    stack: LocalStack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    client, name, v1, v2 = serving_and_next(stack, tmp_path)
    client.set_registered_model_alias(name, "challenger", v2)
    settings = Settings(port=0, poll_interval_s=0.3, model_names=[name], kafka=kafka)

    async with running(settings):
        key = f"{name}@challenger"
        # v2 is also the serving alias's next version: announced for the workers to fetch ahead.
        upcoming = f"{name}@production~candidate"

        async def both() -> bool:
            return await latest(kafka) == {name: v1, key: v2, upcoming: v2}

        await eventually(both, timeout_s=30, what="production and challenger announced")
        keys = [k for k, _ in await records(kafka)]
        # none erases another on compaction
        assert sorted(keys) == sorted([name, key, upcoming])
        # A reader that serves clients sees production only.
        events = ModelEvents(kafka, client_id=unique("test-reader"), verifier=Verifier({}))
        await events.start()
        try:
            serving = serving_only(await events.catch_up())
        finally:
            await events.stop()
        assert {n: e.version for n, e in serving.items()} == {name: v1}

        client.delete_registered_model_alias(name, "challenger")

        async def withdrawn() -> bool:
            return await latest(kafka) == {name: v1, upcoming: v2}

        await eventually(withdrawn, timeout_s=30, what="the challenger withdrawn")
        assert (await records(kafka))[-1] == (key, None)  # a tombstone for its key only
