"""Sustained records/second of the stats processor into PostgreSQL, on this machine.

    .venv/bin/python -m benchmarks.stats_throughput [--records 20000] [--batch-max 2000]
        [--feedback-every 2] [--processors 1 --processors 2] [--baseline DIR]

Starts a local stack on free ports (or uses the running one with ``--running-stack``) and runs
the real processor (``python -m stats``) twice, on fresh topics and a fresh database each time:
without the drift monitor, then with it (every version announced with a reference profile).
Each time the processor joins its group on the empty topics and is paused (SIGSTOP) once the
group is stable; predictions (with the features the drift monitor reads) and the feedback for
every ``--feedback-every``-th of them (half by default; 0: none) are loaded; it is resumed and
the database sampled: the rate is measured between 10% and 90% of the records stored, so
start-up, the group's rebalances and the tail do not count (see ``processor_rate``), in
records/s and in predictions/s (the records that are predictions). A second figure times the
store alone (batches straight into ``PostgresStatsStore``, no Kafka) to show where the time
goes. Each run also says the processor's CPU (user + system, all its threads) per record over
the same span: on a shared machine the rate follows the other jobs, the CPU per record much
less.

``--processors N`` (repeatable, e.g. ``--processors 1 --processors 2``): N processors in one
consumer group share each load, for each N given, one after the other on the same stack, so
the figures are side by side; records/s is theirs together, the CPU per record the sum of
theirs. The topics get at least N partitions each (defaults: 6 predictions, 3 feedback).

``--baseline DIR``: another checkout's processor (e.g. ``git archive main | tar -x -C DIR``)
runs before this one on the same load, ``python -m stats`` started in DIR so that its
packages are imported; figures side by side from the same stack. Prints figures; asserts
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, NamedTuple
from urllib.parse import urlsplit

import asyncpg
import psutil  # type: ignore[import-untyped]
import typer
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

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
from deploy.local.launcher import ROOT, LocalStack
from deploy.local.processes import StatsProcess
from deploy.topics import ensure_topics
from runtime.database import DatabaseSettings
from stats.aggregates import PredictionRow
from stats.db import PostgresStatsStore, create_pool
from stats.migrate import migrate

app = typer.Typer(add_completion=False)

# A run in which nothing more is stored for this long has stalled (two processors, once before
# stats.fetcher's seek: a partition never read again after the group's rebalance).
STALL_S = 60.0


class Rates(NamedTuple):
    """What the processors did with the records loaded."""

    rate: float
    """records/s stored, between 10% and 90% of them"""
    predictions_rate: float
    """predictions/s stored over the same span (the rest of ``rate`` is feedback)"""
    seconds: float
    """from the processors' resume, the records loaded, to the last record stored"""
    cpu_us: float
    """the processors' CPU per record (summed) over the same span as ``rate``, in microseconds"""
    settled_s: float
    """when every processor was in the group and it was stable, from their start"""
    records: int
    """records loaded: predictions and the feedback for some of them"""
    unsettled: int
    """looks at the group (every 0.5 s while reading) that found it rebalancing"""


class StatsRun(NamedTuple):
    processed: Rates
    direct: float
    """predictions/s written by PostgresStatsStore alone"""


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


async def load(kafka: KafkaSettings, preds: list[Prediction], feedback_every: int = 2) -> int:
    """Predictions, and feedback for every ``feedback_every``-th one (none for 0); returns how
    many records were sent."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all", linger_ms=20)
    await producer.start()
    sent = 0
    try:
        for i, p in enumerate(preds):
            key = p.request_id.encode()
            await producer.send(kafka.predictions_topic, key=key, value=encode(p))
            sent += 1
            if feedback_every and i % feedback_every == 0:
                fb = Feedback(request_id=p.request_id, label=1, source=Source.REPLAY)
                await producer.send(kafka.feedback_topic, key=key, value=encode(fb))
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def stored(conn: asyncpg.Connection) -> tuple[int, int]:
    """Records stored (predictions and feedback), and the predictions among them."""
    predictions, feedback = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM predictions), (SELECT count(*) FROM feedback)"
    )
    return int(predictions) + int(feedback), int(predictions)


async def processor_rate(
    kafka: KafkaSettings,
    url: str,
    load_records: Callable[[], Awaitable[int]],
    env: dict[str, str],
    workdir: Path,
    checkout: Path = ROOT,
    processors: int = 1,
    echo: Callable[[str], None] = typer.echo,
) -> Rates:
    """The processors' sustained records/s between 10% and 90% stored, seconds from their
    resume to the last record, their CPU microseconds per record between 10% and 90% (summed),
    seconds from their start until the group held them all and was stable, records loaded.

    ``processors`` start together on the empty topics and join one group. Once it holds them
    all and is stable they are paused (SIGSTOP), the records are loaded and they are resumed,
    so the rate is that of N settled processors reading a backlog: not of their joining one
    after the other (each join is a rebalance that stops the group's reading), nor of the load
    generator. The pause, a few seconds, is well inside the group's session timeout (45 s)."""
    conn = await asyncpg.connect(url)
    samples: list[Sample] = []
    group = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**kafka.client())
    await admin.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            logs = [workdir / f"stats-{i}.log" for i in range(processors)]
            running = [
                await stack.enter_async_context(processor(kafka, url, group, log, env, checkout))
                for log in logs
            ]
            cpus = [psutil.Process(p.process.pid) for p in running if p.process is not None]
            started = time.monotonic()
            while not await group_settled(admin, group, processors):
                for p in running:
                    if not p.alive() or time.monotonic() > started + 180:
                        raise RuntimeError(f"the group did not settle:\n{p.log()[-3000:]}")
                await asyncio.sleep(0.2)
            settled_s = time.monotonic() - started
            for c in cpus:
                c.suspend()
            try:
                loading = time.perf_counter()
                total = await load_records()
                echo(f"loaded {total} records into Kafka in {time.perf_counter() - loading:.1f}s")
            finally:
                for c in cpus:
                    c.resume()
            resumed = time.monotonic()
            unsettled = 0
            deadline = resumed + 600
            while not samples or samples[-1].records < total:
                for p in running:
                    if not p.alive() or time.monotonic() > deadline:
                        raise RuntimeError(f"a processor did not finish:\n{p.log()[-3000:]}")
                if stalled(samples):
                    raise RuntimeError(
                        f"stalled: {samples[-1].records} of {total} records stored and none for "
                        f"{STALL_S:.0f}s; lag per processor: {[await lagging(p) for p in running]}"
                    )
                cpu = sum(t.user + t.system for t in (c.cpu_times() for c in cpus))
                records, predictions_stored = await stored(conn)
                samples.append(Sample(time.monotonic(), records, predictions_stored, cpu))
                if len(samples) % 5 == 0 and not await group_settled(admin, group, processors):
                    unsettled += 1
                await asyncio.sleep(0.1)
            for p in running:
                p.terminate()
    finally:
        await conn.close()
        await admin.close()
    i10 = next(i for i, s in enumerate(samples) if s.records >= 0.1 * total)
    i90 = next(i for i, s in enumerate(samples) if s.records >= 0.9 * total)
    if i10 == i90:  # a small load stored within one sample: measure from the sample before
        i10 = max(0, i10 - 1)
    first, last = samples[i10], samples[i90]
    if last.at <= first.at:  # stored before the first sample: measure from the resume
        first = Sample(resumed, 0, 0, samples[0].cpu_s)
    span = last.at - first.at
    records = max(1, last.records - first.records)
    return Rates(
        rate=(last.records - first.records) / span,
        predictions_rate=(last.predictions - first.predictions) / span,
        seconds=samples[-1].at - resumed,
        cpu_us=(last.cpu_s - first.cpu_s) / records * 1e6,
        settled_s=settled_s,
        records=total,
        unsettled=unsettled,
    )


class Sample(NamedTuple):
    """The database and the processors, read every 0.1 s while they work."""

    at: float
    records: int
    """predictions and feedback stored"""
    predictions: int
    cpu_s: float
    """the processors' CPU (user + system) since their start, summed"""


def stalled(samples: list[Sample]) -> bool:
    """Nothing stored for STALL_S, with records stored before (start-up is not a stall)."""
    if not samples or samples[-1].records == 0:
        return False
    now, count = samples[-1].at, samples[-1].records
    last_change = next(s.at for s in samples if s.records == count)
    return now - last_change > STALL_S


async def lagging(processor: StatsProcess) -> dict[str, float]:
    """The partitions a processor holds with records it has not committed, and how many."""
    samples = await processor.metrics()
    return {
        f"{dict(labels)['topic']}[{dict(labels)['partition']}]": lag
        for (name, labels), lag in samples.items()
        if name == "rs_stats_consumer_lag" and lag > 0
    }


async def group_settled(admin: AIOKafkaAdminClient, group: str, members: int) -> bool:
    """The group has ``members`` members and is not rebalancing."""
    try:
        (response,) = await admin.describe_consumer_groups([group])
    except KafkaError:  # no coordinator yet: a fresh broker creates __consumer_offsets first
        return False
    _error, _group, state, _type, _protocol, joined, *_ = response.groups[0]
    return bool(state == "Stable" and len(joined) == members)


def processor(
    kafka: KafkaSettings, url: str, group: str, log: Path, env: dict[str, str], checkout: Path
) -> StatsProcess:
    return StatsProcess(
        kafka=kafka, database_url=url, group_id=group, log_path=log, extra_env=env, cwd=checkout
    )


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


async def bench(
    records: int,
    batch_max: int,
    running_stack: bool,
    baseline: Path | None,
    processors: Sequence[int] = (1,),
    feedback_every: int = 2,
) -> None:
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
            await run(bootstrap, base_url, records, batch_max, workdir, baseline, processors,
                      feedback_every)  # fmt: skip
        finally:
            if stack is not None:
                stack.stop()


async def run(
    bootstrap: str,
    base_url: str,
    records: int,
    batch_max: int,
    workdir: Path,
    baseline: Path | None = None,
    processors: Sequence[int] = (1,),
    feedback_every: int = 2,
) -> None:
    """The processor without and with the drift monitor, on the same load, side by side (and
    the baseline's before each, when given), with each number of processors given."""
    checkouts = (
        {"this code": ROOT} if baseline is None else {"baseline": baseline, "this code": ROOT}
    )
    figures: dict[tuple[bool, int, str], StatsRun] = {}
    for monitor in (False, True):
        for n in processors:
            for name, checkout in checkouts.items():
                figures[monitor, n, name] = await one_run(
                    bootstrap, base_url, records, batch_max, workdir, monitor=monitor,
                    checkout=checkout, processors=n, feedback_every=feedback_every,
                )  # fmt: skip
    first = next(iter(figures.values()))
    total = first.processed.records
    lines = [
        f"\nstats processors, Kafka -> faust -> PostgreSQL (batch_max={batch_max}), {total} "
        f"records ({records} predictions + {total - records} feedback) each run; records/s "
        "and predictions/s sustained (10% to 90% stored), the processors' CPU per record (summed) "
        "over the same span:"
    ]
    for (monitor, n, name), run_figures in figures.items():
        f = run_figures.processed
        where = f" ({checkouts[name]})" if baseline is not None else ""
        lines.append(
            f"  drift monitor {'on ' if monitor else 'off'}, {n} processor{'s' if n > 1 else ''}, "
            f"{name}{where}: {f.rate:,.0f} records/s ({f.predictions_rate:,.0f} predictions/s), "
            f"{f.cpu_us:.0f} us CPU/record, all stored "
            f"{f.seconds:.1f}s after the resume (the group settled {f.settled_s:.1f}s after "
            f"their start; found rebalancing while reading: {f.unsettled} times)"
        )
    direct = first.direct
    lines += [
        f"store alone, PostgresStatsStore.write_predictions, {batch_max} per transaction:",
        f"  {direct:,.0f} predictions/s",
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
    ]
    typer.echo("\n".join(lines))


async def one_run(
    bootstrap: str,
    base_url: str,
    records: int,
    batch_max: int,
    workdir: Path,
    *,
    monitor: bool,
    echo: Callable[[str], None] = typer.echo,
    checkout: Path = ROOT,
    processors: int = 1,
    feedback_every: int = 2,
) -> StatsRun:
    """Fresh topics and database, ``processors`` of ``checkout`` (this one by default) in one
    group; every source topic has a partition for each of them at least. The load: ``records``
    predictions and feedback for every ``feedback_every``-th of them (none for 0)."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    defaults = KafkaSettings()
    kafka = defaults.prefixed(
        prefix,
        bootstrap_servers=bootstrap,
        predictions_partitions=max(processors, defaults.predictions_partitions),
        feedback_partitions=max(processors, defaults.feedback_partitions),
    )
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
        env = {"RS_STATS_BATCH_MAX": str(batch_max), "RS_STATS_DRIFT_ENABLED": str(monitor)}
        rates = await processor_rate(
            kafka,
            url,
            lambda: load(kafka, preds, feedback_every),
            env,
            workdir,
            checkout,
            processors,
            echo,
        )
        direct = await store_rate(url, min(records, 20_000), batch_max)
        return StatsRun(rates, direct)
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
        int, typer.Option(help="predictions to load (plus feedback, see --feedback-every)")
    ] = 20_000,
    feedback_every: Annotated[
        int, typer.Option(min=0, help="feedback for every N-th prediction; 0: predictions only")
    ] = 2,
    batch_max: Annotated[int, typer.Option(help="RS_STATS_BATCH_MAX of the processor")] = 2000,
    running_stack: Annotated[
        bool,
        typer.Option(help="use the stack at RS_KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL"),
    ] = False,
    baseline: Annotated[
        Path | None,
        typer.Option(help="another checkout whose processor runs before this one, same load"),
    ] = None,
    processors: Annotated[
        list[int] | None,
        typer.Option(min=1, help="processors in one group; repeat to compare (1 by default)"),
    ] = None,
) -> None:
    """Print the stats processors' sustained records/second into PostgreSQL."""
    asyncio.run(
        bench(records, batch_max, running_stack, baseline, processors or [1], feedback_every)
    )


if __name__ == "__main__":
    app()
