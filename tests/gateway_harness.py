"""Run the real gateway (``python -m gateway``) as a subprocess, and a real headless Chromium.

The gateway is a ``deploy.local.processes.ServiceProcess``: readiness is polled with a deadline
and the process is stopped when its block ends. Chromium is Debian's package (``make test``
installs it), driven by Playwright; no browser is downloaded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from playwright.async_api import Browser, async_playwright

from contracts import ChangeReason, Feedback, ModelChanged, Prediction, Source, Timings, encode
from contracts.topics import KafkaSettings
from deploy.local.launcher import ROOT, free_port
from deploy.local.processes import ServiceProcess, kafka_env
from stats.aggregates import FeedbackRow, PredictionRow
from stats.db import PostgresStatsStore, create_pool

__all__ = [
    "ARTIFACTS",
    "GatewayProcess",
    "announce",
    "chromium",
    "kafka_env",
    "model_event",
    "record_feedback",
    "record_prediction",
    "running_gateway",
    "stats_store",
    "wait_for_model",
    "wait_until_ready",
]

ARTIFACTS = ROOT / ".artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class GatewayProcess(ServiceProcess):
    """``python -m gateway`` on a free port of its own."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, tls: bool = False) -> None:
        port, self.ops_port = free_port(), free_port()
        env = {**env, "RS_GATEWAY_PORT": str(port), "RS_GATEWAY_OPS_PORT": str(self.ops_port)}
        super().__init__("gateway", env=env, log_path=log_path, port=port, tls=tls)

    @property
    def ops_url(self) -> str:
        """The operations port: /healthz, /readyz and /metrics without a key (plain HTTP)."""
        return f"http://127.0.0.1:{self.ops_port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/v1/ws"


def running_gateway(
    env: Mapping[str, str], log_path: Path, *, tls: bool = False
) -> AbstractAsyncContextManager[GatewayProcess]:
    """The gateway until the block ends, once it answers /healthz (it is up: whether it is
    ready, with Kafka and PostgreSQL, is the test's to ask)."""
    return GatewayProcess(env, log_path, tls=tls).running(ready="/healthz")


async def wait_until_ready(
    client: httpx.AsyncClient, *, timeout_s: float = 60, headers: Mapping[str, str] | None = None
) -> None:
    """Poll /readyz until Kafka and PostgreSQL both answer (the database is optional to the
    gateway's readiness: ready and not degraded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/readyz", headers=headers)
        if response.status_code == 200 and "degraded" not in response.json():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready: {response.text}")
        await asyncio.sleep(0.2)


def model_event(model_name: str = "reviewstream-sentiment", version: str = "1") -> ModelChanged:
    """An announcement of a model version, as the registry watcher makes them (no bundle)."""
    return ModelChanged(
        model_name=model_name,
        version=version,
        alias="production",
        artifact_uri=f"models:/{model_name}/{version}",
        sha256="0" * 64,
        reason=ChangeReason.PROMOTED,
    )


async def announce(kafka: KafkaSettings, event: ModelChanged) -> None:
    """Publish a ModelChanged on the models topic, as the registry watcher does: gateways
    then know a model is deployed (and workers load it, if the registry has it)."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka.models_topic, encode(event), key=event.model_name.encode()
        )
    finally:
        await producer.stop()


async def wait_for_model(client: httpx.AsyncClient, state: str, *, timeout_s: float = 30) -> None:
    """Poll /v1/model until the gateway has read the models topic to this state."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/v1/model")
        if response.status_code == 200 and response.json()["state"] == state:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway's model is not {state}: {response.text}")
        await asyncio.sleep(0.1)


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian's chromium is missing: run `make browser` (make test does)")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    _require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def stats_store(database_url: str) -> AsyncIterator[PostgresStatsStore]:
    """The stats processor's own store, to write rows exactly as the processor does."""
    pool = await create_pool(database_url, max_size=2)
    try:
        yield PostgresStatsStore(pool)
    finally:
        await pool.close()


async def record_prediction(
    store: PostgresStatsStore,
    *,
    request_id: str,
    label: int,
    probability: float,
    model_version: str = "1",
    model_name: str = "reviewstream-sentiment",
    predicted_at: datetime | None = None,
    latency_ms: float = 12.0,
    source: Source = Source.PRODUCER,
) -> None:
    """Write one Prediction through the processor's store: the row, its window counters and
    latency histogram, and the pairing with feedback that waited for it."""
    at = predicted_at or datetime.now(UTC)
    prediction = Prediction(
        request_id=request_id,
        label=label,
        probability=probability,
        model_name=model_name,
        model_version=model_version,
        worker_id="worker-test",
        submitted_at=at,
        predicted_at=at,
        source=source,
        timings=Timings(queue_ms=latency_ms / 2, inference_ms=latency_ms / 2, batch_size=1),
    )
    await store.write_predictions([PredictionRow.from_message(prediction)])


async def record_feedback(
    store: PostgresStatsStore,
    *,
    feedback_id: str,
    label: int,
    request_id: str | None = None,
    text: str | None = None,
) -> None:
    """Write one Feedback through the processor's store (it labels its prediction, if stored)."""
    feedback = Feedback(
        feedback_id=feedback_id, request_id=request_id, text=text, label=label, source=Source.REPLAY
    )
    await store.write_feedback([FeedbackRow.from_message(feedback)])
