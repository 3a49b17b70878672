"""Run the real gateway (``python -m gateway``) as a subprocess, and a real headless Chromium.

Readiness is polled with a deadline; every process is stopped in ``finally``. Chromium is
Debian's package (``make test`` installs it), driven by Playwright; no browser is downloaded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from playwright.async_api import Browser, async_playwright

from contracts.topics import KafkaSettings
from tests.localstack import ROOT, free_port

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


def kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    """The RS_KAFKA_* variables that make a service use exactly these topics."""
    return {f"RS_KAFKA_{name.upper()}": str(value) for name, value in kafka.model_dump().items()}


@dataclass
class GatewayProcess:
    env: Mapping[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    tls: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/v1/ws"

    def start(self, *, timeout_s: float = 90, verify: ssl.SSLContext | bool = False) -> None:
        env = {**os.environ, **self.env, "RS_GATEWAY_PORT": str(self.port)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", verify=verify, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway did not answer in time:\n{self.log()}")
            time.sleep(0.2)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@contextmanager
def running_gateway(
    env: Mapping[str, str], log_path: Path, *, port: int | None = None
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(env, log_path) if port is None else GatewayProcess(env, log_path, port)
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()


async def wait_until_ready(client: httpx.AsyncClient, *, timeout_s: float = 60) -> None:
    """Poll /readyz until Kafka and PostgreSQL both answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/readyz")
        if response.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready: {response.text}")
        await asyncio.sleep(0.2)


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


async def record_prediction(
    conn: asyncpg.Connection,
    *,
    request_id: str,
    label: int,
    probability: float,
    model_version: str = "1",
    model_name: str = "reviewstream-sentiment",
    predicted_at: datetime | None = None,
    latency_ms: float = 12.0,
    true_label: int | None = None,
    source: str = "producer",
) -> None:
    """Write one prediction as the stats processor does: the row and its window counters,
    in one transaction (tables from stats/migrations/0001_initial.sql)."""
    at = predicted_at or datetime.now(UTC)
    labelled = int(true_label is not None)
    correct = int(true_label is not None and true_label == label)
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO predictions (request_id, model_name, model_version, label, probability,
                   source, worker_id, submitted_at, predicted_at, latency_ms, true_label)
               VALUES ($1, $2, $3, $4, $5, $6, 'worker-test', $7, $7, $8, $9)""",
            request_id, model_name, model_version, label, probability, source, at, latency_ms,
            true_label,
        )  # fmt: skip
        for granularity in ("minute", "hour"):
            await conn.execute(
                """INSERT INTO window_stats AS w (model_name, model_version, granularity,
                       window_start, predictions, positives, latency_ms_sum, latency_ms_max,
                       labelled, correct)
                   VALUES ($1, $2, $3, date_trunc($3, $4::timestamptz), 1, $5, $6, $6, $7, $8)
                   ON CONFLICT (model_name, model_version, granularity, window_start) DO UPDATE
                   SET predictions = w.predictions + 1, positives = w.positives + $5,
                       latency_ms_sum = w.latency_ms_sum + $6,
                       latency_ms_max = greatest(w.latency_ms_max, $6),
                       labelled = w.labelled + $7, correct = w.correct + $8""",
                model_name, model_version, granularity, at, label, latency_ms, labelled, correct,
            )  # fmt: skip


async def record_feedback(
    conn: asyncpg.Connection,
    *,
    feedback_id: str,
    label: int,
    request_id: str | None = None,
    text: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO feedback (feedback_id, request_id, text, label, source, given_at)
           VALUES ($1, $2, $3, $4, 'replay', now())""",
        feedback_id,
        request_id,
        text,
        label,
    )
