"""Sustained records/second of the stats processor into PostgreSQL, on this machine.

    .venv/bin/python -m benchmarks.stats_throughput [--records 20000] [--batch-max 500]

Starts a local stack on free ports (or uses the running one with ``--running-stack``), loads
predictions (with the features the drift monitor reads) and the feedback for half of them into
fresh topics, then runs the real processor (``python -m stats``) twice, on fresh topics and a
fresh database each time: without the drift monitor, then with it (every version announced
with a reference profile), and samples the database: the rate is measured between 10% and 90% of
the records stored, so start-up and the tail do not count. A second figure times the store
alone (batches straight into ``PostgresStatsStore``, no Kafka) to show where the time goes.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import asyncpg
import typer
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import (
    Feedback,
    HistogramSpec,
    KafkaSettings,
    ModelChanged,
    Prediction,
    ReferenceProfile,
    RequestFeatures,
    Source,
    Timings,
    encode,
)
from deploy.local.launcher import LocalStack
from deploy.local.processes import StatsProcess
from deploy.topics import ensure_topics
from runtime.database import DatabaseSettings
from stats.aggregates import PredictionRow
from stats.db import PostgresStatsStore, create_pool
from stats.migrate import migrate

app = typer.Typer(add_completion=False)


def predictions(prefix: str, n: int) -> list[Prediction]:
    base = datetime.now(UTC) - timedelta(hours=1)
    return [
        Prediction(
            request_id=f"{prefix}-{i}",
            label=i % 2,
            probability=0.9 if i % 2 else 0.1,
            model_name="reviewstream-sentiment",
            model_version=str(1 + i % 3),
            worker_id=f"w{i % 4}",
            submitted_at=base + timedelta(milliseconds=20 * i),
            predicted_at=base + timedelta(milliseconds=20 * i + 15),
            source=Source.PRODUCER,
            timings=Timings(queue_ms=float(i % 97), inference_ms=4.0, batch_size=32),
            features=RequestFeatures(words=20 + i % 150, unknown_share=(i % 7) / 50),
        )
        for i in range(n)
    ]


def profile() -> ReferenceProfile:
    """A reference for the drift monitor, roughly what the loaded predictions look like."""
    return ReferenceProfile(
        size=3000,
        accuracy=0.9,
        histograms={
            "confidence": HistogramSpec(edges=[0.5, 0.8, 0.95], shares=[0.1, 0.2, 0.7]),
            "positive": HistogramSpec(edges=[0.0, 0.5], shares=[0.5, 0.5]),
            "length": HistogramSpec(edges=[0.0, 50.0, 100.0], shares=[0.2, 0.4, 0.4]),
            "unknown_share": HistogramSpec(edges=[0.0, 0.05, 0.1], shares=[0.5, 0.3, 0.2]),
        },
    )


async def announce_versions(kafka: KafkaSettings) -> None:
    """Versions 1 to 3 with a profile on the models topic, as the registry watcher would."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        for version in ("1", "2", "3"):
            event = ModelChanged(model_name=f"reviewstream-sentiment-{version}", version=version,
                                 alias="production", artifact_uri="none", sha256="0" * 64,
                                 profile=profile())  # fmt: skip
            await producer.send_and_wait(kafka.models_topic, encode(event),
                                         key=event.model_name.encode())  # fmt: skip
    finally:
        await producer.stop()


async def load(kafka: KafkaSettings, preds: list[Prediction]) -> int:
    """Predictions, and feedback for every second one; returns how many records were sent."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all", linger_ms=20)
    await producer.start()
    sent = 0
    try:
        for i, p in enumerate(preds):
            key = p.request_id.encode()
            await producer.send(kafka.predictions_topic, key=key, value=encode(p))
            sent += 1
            if i % 2 == 0:
                fb = Feedback(request_id=p.request_id, label=1, source=Source.REPLAY)
                await producer.send(kafka.feedback_topic, key=key, value=encode(fb))
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def stored(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT (SELECT count(*) FROM predictions) + (SELECT count(*) FROM feedback)"
        )
    )


async def processor_rate(
    kafka: KafkaSettings, url: str, total: int, env: dict[str, str], workdir: Path
) -> tuple[float, float]:
    """(sustained records/s between 10% and 90%, seconds from start to the last record)."""
    conn = await asyncpg.connect(url)
    samples: list[tuple[float, int]] = []
    try:
        async with StatsProcess(
            kafka=kafka,
            database_url=url,
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            log_path=workdir / "stats.log",
            extra_env=env,
        ) as processor:
            started = time.monotonic()
            deadline = started + 600
            while not samples or samples[-1][1] < total:
                if not processor.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the processor did not finish:\n{processor.log()[-3000:]}")
                samples.append((time.monotonic(), await stored(conn)))
                await asyncio.sleep(0.1)
            processor.terminate()
    finally:
        await conn.close()
    i10 = next(i for i, (_, c) in enumerate(samples) if c >= 0.1 * total)
    i90 = next(i for i, (_, c) in enumerate(samples) if c >= 0.9 * total)
    if i10 == i90:  # a small load stored within one sample: measure from the sample before
        i10 = max(0, i10 - 1)
    (t10, c10), (t90, c90) = samples[i10], samples[i90]
    if t90 <= t10:  # stored before the first sample: measure from the processor's start
        t10, c10 = started, 0
    return (c90 - c10) / (t90 - t10), samples[-1][0] - started


async def store_rate(url: str, n: int, batch: int) -> float:
    """Predictions per second written by PostgresStatsStore alone, ``batch`` per transaction."""
    rows = [PredictionRow.from_message(p) for p in predictions(f"direct-{uuid.uuid4().hex[:6]}", n)]
    pool = await create_pool(url, max_size=2)
    try:
        store = PostgresStatsStore(pool)
        started = time.perf_counter()
        for i in range(0, n, batch):
            await store.write_predictions(rows[i : i + batch])
        return n / (time.perf_counter() - started)
    finally:
        await pool.close()


async def bench(records: int, batch_max: int, running_stack: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="stats-bench-") as tmp:
        workdir = Path(tmp)
        stack = None if running_stack else LocalStack(state_dir=workdir / "stack")
        try:
            if stack is not None:
                typer.echo("starting a local stack on free ports ...")
                await asyncio.to_thread(stack.start)
                bootstrap, base_url = stack.bootstrap_servers, stack.database_url
            else:
                bootstrap = KafkaSettings().bootstrap_servers
                base_url = DatabaseSettings().url.get_secret_value()
            await run(bootstrap, base_url, records, batch_max, workdir)
        finally:
            if stack is not None:
                stack.stop()


async def run(bootstrap: str, base_url: str, records: int, batch_max: int, workdir: Path) -> None:
    """The processor without and with the drift monitor, on the same load, side by side."""
    figures = {}
    for monitor in (False, True):
        figures[monitor] = await one_run(
            bootstrap, base_url, records, batch_max, workdir, monitor=monitor
        )
    (total, plain, plain_s, direct), (_, watched, watched_s, _) = figures[False], figures[True]
    typer.echo(
        f"\nstats processor, Kafka -> faust -> PostgreSQL (batch_max={batch_max}), "
        f"{total} records ({records} predictions + {total - records} feedback) each run:\n"
        f"  drift monitor off: {plain:,.0f} records/s sustained (10% to 90% stored), "
        f"all stored {plain_s:.1f}s after start\n"
        f"  drift monitor on:  {watched:,.0f} records/s sustained, all stored "
        f"{watched_s:.1f}s after start ({watched / plain:.2f}x)\n"
        f"store alone, PostgresStatsStore.write_predictions, {batch_max} per transaction:\n"
        f"  {direct:,.0f} predictions/s\n"
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )


async def one_run(
    bootstrap: str,
    base_url: str,
    records: int,
    batch_max: int,
    workdir: Path,
    *,
    monitor: bool,
    echo: Callable[[str], None] = typer.echo,
) -> tuple[int, float, float, float]:
    """Fresh topics and database: (records, records/s, seconds to the last, store alone/s)."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings().prefixed(prefix, bootstrap_servers=bootstrap)
    name = prefix.replace("-", "_")
    admin_url = urlsplit(base_url)._replace(path="/postgres").geturl()
    url = urlsplit(base_url)._replace(path=f"/{name}").geturl()
    admin_db = await asyncpg.connect(admin_url)
    await admin_db.execute(f'CREATE DATABASE "{name}"')
    try:
        await migrate(url)
        await ensure_topics(kafka)
        if monitor:
            await announce_versions(kafka)
        preds = predictions(prefix, records)
        started = time.perf_counter()
        total = await load(kafka, preds)
        echo(f"loaded {total} records into Kafka in {time.perf_counter() - started:.1f}s")
        env = {"RS_STATS_BATCH_MAX": str(batch_max), "RS_STATS_DRIFT_ENABLED": str(monitor)}
        rate, elapsed = await processor_rate(kafka, url, total, env, workdir)
        direct = await store_rate(url, min(records, 20_000), batch_max)
        return total, rate, elapsed, direct
    finally:
        await admin_db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_db.close()
        await delete_topics(kafka)


async def delete_topics(kafka: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**kafka.client())
    await admin.start()
    try:
        await admin.delete_topics([spec.name for spec in kafka.topic_specs()])
    finally:
        await admin.close()


@app.command()
def main(
    records: Annotated[
        int, typer.Option(help="predictions to load (plus feedback for half)")
    ] = 20_000,
    batch_max: Annotated[int, typer.Option(help="RS_STATS_BATCH_MAX of the processor")] = 500,
    running_stack: Annotated[
        bool,
        typer.Option(help="use the stack at RS_KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL"),
    ] = False,
) -> None:
    """Print the stats processor's sustained records/second into PostgreSQL."""
    asyncio.run(bench(records, batch_max, running_stack))


if __name__ == "__main__":
    app()
