"""Drive the real stats processor (``python -m stats``) as a child process, for tests and
benchmarks: its own port and consumer group, its log in a file, kills that are real kills.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from prometheus_client.parser import text_string_to_metric_families

from contracts.topics import KafkaSettings
from deploy.local.launcher import ROOT, free_port


def kafka_env(settings: KafkaSettings) -> dict[str, str]:
    """The RS_KAFKA_* variables that make a child process see ``settings``."""
    return {f"RS_KAFKA_{name.upper()}": str(value) for name, value in settings.model_dump().items()}


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, every_s: float = 0.2
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s:.0f}s: {what}")
        await asyncio.sleep(every_s)


class StatsProcess:
    """One ``python -m stats`` child. Use as ``async with``: it is always killed at the end."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        database_url: str,
        group_id: str,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.group_id = group_id
        self.log_path = log_path
        self.env = {
            **os.environ,
            **kafka_env(kafka),
            "DATABASE_URL": database_url,
            "RS_STATS_HOST": "127.0.0.1",
            "RS_STATS_PORT": str(self.port),
            "RS_STATS_GROUP_ID": group_id,
            "RS_STATS_DATA_DIR": str(log_path.parent / f"{log_path.stem}-data"),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> StatsProcess:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.kill()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stats"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no drain, no last commit, exactly what a crash leaves behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, and the exit code once it has drained and stopped."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.get(f"{self.url}{path}")

    async def wait_ready(self, timeout_s: float = 90) -> None:
        async def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"the processor exited early:\n{self.log()[-4000:]}")
            try:
                return (await self.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ready, timeout_s=timeout_s, what="the processor answers /readyz")

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        text = (await self.get("/metrics")).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


async def partitions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    tps = await partitions(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group_id: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def caught_up(kafka: KafkaSettings, group_id: str) -> bool:
    """The group has committed every record of the predictions and feedback topics."""
    ends = await end_offsets(
        kafka.bootstrap_servers, [kafka.predictions_topic, kafka.feedback_topic]
    )
    try:
        committed = await committed_offsets(kafka.bootstrap_servers, group_id)
    except GroupCoordinatorNotAvailableError:
        return False  # the broker is still creating __consumer_offsets (a fresh stack)
    return all(committed.get(tp, 0) >= end for tp, end in ends.items())
