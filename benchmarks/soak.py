"""Scenario 9, the soak: minutes of fixed-rate load through the gateway (REST) and through Kafka
producers together, with the stats processor counting everything into PostgreSQL.

Open loop: each load source sends on a clock, whatever the answers do, so a slow system shows
as growing latency and lag rather than as a politely slower client. Every few seconds it samples
the consumer lags (workers on the requests topic, the stats processor on the predictions topic),
the predictions not yet counted in PostgreSQL, and the resident memory of every process of the
stack. At the end the load stops and the soak waits for everything to drain, then checks that
nothing was lost (every request answered, every answer stored) and nothing counted twice (the
per-minute counts sum to the stored rows). The stats processor starts with its group at the end
of the predictions topic, so it counts the soak's predictions and nothing older.

The end-to-end figure is read back from PostgreSQL itself: each stored prediction's time from
its request's ``submitted_at`` to its row's ``recorded_at`` ("request produced -> row in
PostgreSQL"), and the rows stored per second, by the minute the request was sent.

Figures per minute (p50/p99 of both paths and of the way into PostgreSQL, lags, RSS) go to the
report, and the whole time line to a PNG under ``.artifacts/bench/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import numpy as np
import psutil  # type: ignore[import-untyped]
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from matplotlib.figure import Figure

from benchmarks.streaming import reader_at_end
from contracts import KafkaSettings, ReviewRequest, Source, encode
from deploy.local.processes import StatsProcess
from stats.migrate import migrate

TICK_S = 0.02  # the load clock: sends what is due every 20 ms
REST_IN_FLIGHT = 512  # beyond this the REST source counts a request as shed, not queued
DRAIN_TIMEOUT_S = 180


@dataclass(frozen=True)
class SoakPlan:
    seconds: float
    kafka_rate: float  # requests/s produced straight to the requests topic
    rest_rate: float  # requests/s to POST /v1/classify
    sample_s: float = 5.0


@dataclass
class Sample:
    at_s: float
    worker_lag: int
    stats_lag: int
    uncounted: int  # answered but not yet in PostgreSQL's per-minute counts
    rss_mib: dict[str, float]


@dataclass
class Timeline:
    """When each request was sent (seconds into the soak) and how long it took to get where it
    was going, in the same order."""

    sent_at: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)


@dataclass
class SourceLog(Timeline):
    """One load source's log: its requests' answers, and what it failed to send."""

    sent: int = 0
    failed: int = 0
    shed: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # why each failed, by HTTP status/error

    def fail(self, why: str) -> None:
        self.failed += 1
        self.errors[why] = self.errors.get(why, 0) + 1


@dataclass
class SoakResult:
    plan: SoakPlan
    kafka: SourceLog
    rest: SourceLog
    samples: list[Sample]
    unanswered: int
    stored: int
    counted: int
    drain_s: float
    into_postgresql: Timeline  # request produced -> its prediction's row in PostgreSQL

    @property
    def answered(self) -> int:
        return len(self.kafka.latency_ms) + len(self.rest.latency_ms)

    @property
    def duplicates(self) -> int:
        return self.counted - self.stored

    @property
    def lost(self) -> int:
        return (
            self.unanswered
            + self.kafka.failed
            + self.rest.failed
            + max(0, self.answered - self.stored)
        )

    def per_minute(self) -> list[dict[str, float]]:
        rows = []
        minutes = max(1, int(np.ceil(self.plan.seconds / 60)))
        for m in range(minutes):
            row: dict[str, float] = {"minute": m + 1}
            span_s = min(60.0, self.plan.seconds - 60 * m)  # the last minute may be cut short
            for name, path in self.timelines():
                at = np.asarray(path.sent_at)
                ms = np.asarray(path.latency_ms)
                inside = ms[(at >= 60 * m) & (at < 60 * (m + 1))]
                row[f"{name}_answered"] = float(len(inside))
                row[f"{name}_per_s"] = len(inside) / span_s
                for q in (50, 99):
                    value = float(np.percentile(inside, q)) if len(inside) else float("nan")
                    row[f"{name}_p{q}_ms"] = value
            window = [s for s in self.samples if 60 * m <= s.at_s < 60 * (m + 1)]
            row["worker_lag_max"] = float(max((s.worker_lag for s in window), default=0))
            row["stats_lag_max"] = float(max((s.stats_lag for s in window), default=0))
            row["uncounted_max"] = float(max((s.uncounted for s in window), default=0))
            rows.append(row)
        return rows

    def timelines(self) -> tuple[tuple[str, Timeline], ...]:
        return ("kafka", self.kafka), ("rest", self.rest), ("stored", self.into_postgresql)

    def rss_growth_mib(self) -> dict[str, float]:
        """Per process: the mean RSS of the last fifth of the samples minus the first fifth's
        (after the first minute, which holds the warm-up); about 0 when nothing leaks."""
        steady = [s for s in self.samples if s.at_s >= min(60.0, self.plan.seconds / 5)]
        if len(steady) < 5:
            steady = self.samples
        fifth = max(1, len(steady) // 5)
        growth = {}
        for name in steady[0].rss_mib if steady else {}:
            head = [s.rss_mib.get(name, np.nan) for s in steady[:fifth]]
            tail = [s.rss_mib.get(name, np.nan) for s in steady[-fifth:]]
            growth[name] = float(np.nanmean(tail) - np.nanmean(head))
        return growth


# -- what runs ---------------------------------------------------------------------------------


def stack_processes(stack_pid: int | None, services: dict[str, int]) -> dict[str, list[int]]:
    """Every process whose memory the soak follows, by name: the services, and the local stack's
    broker, PostgreSQL (all its backends) and MLflow server (all its workers)."""
    names: dict[str, list[int]] = {name: [pid] for name, pid in services.items()}
    if stack_pid is None:
        return names
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(stack_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                line = " ".join(child.cmdline())
                if "kafka.Kafka" in line:
                    names.setdefault("kafka", []).append(child.pid)
                elif child.name().startswith("postgres"):
                    names.setdefault("postgresql", []).append(child.pid)
                elif "mlflow" in line:
                    names.setdefault("mlflow server", []).append(child.pid)
    return names


def rss_mib(processes: dict[str, list[int]]) -> dict[str, float]:
    sizes = {}
    for name, pids in processes.items():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss / 2**20
        sizes[name] = total
    return sizes


async def consumer_lag(
    admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer, group: str, topic: str
) -> int:
    """Records of ``topic`` that ``group`` has not committed yet, over all its partitions."""
    (described,) = await admin.describe_topics([topic])
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    end = await ends.end_offsets(partitions)
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    done = {tp: max(0, c.offset) for tp, c in committed.items() if c is not None}  # -1: none yet
    return sum(max(0, end[tp] - done.get(tp, 0)) for tp in partitions)


async def start_group_at_end(kafka: KafkaSettings, group: str, topic: str) -> None:
    """Commit ``group``'s offsets at the end of ``topic``: its first consumer starts there."""
    consumer = AIOKafkaConsumer(topic, **kafka.client(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        end = await consumer.end_offsets(partitions)
        await consumer.commit({tp: end[tp] for tp in partitions})
    finally:
        await consumer.stop()


# -- the soak ----------------------------------------------------------------------------------


class Soak:
    def __init__(
        self,
        plan: SoakPlan,
        *,
        kafka: KafkaSettings,
        gateway_url: str,
        database_url: str,
        model_name: str,
        worker_group: str,
        texts: Sequence[str],
        work: Path,
        echo: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self.kafka = kafka
        self.gateway_url = gateway_url
        self.database_url = database_url
        self.model_name = model_name
        self.worker_group = worker_group
        self.texts = itertools.cycle(texts)
        self.work = work
        self.echo = echo
        self.stats_group = f"{model_name}-soak-stats"
        self.k = SourceLog()
        self.r = SourceLog()
        self.pending: dict[bytes, float] = {}  # Kafka requests sent, not yet answered
        self.samples: list[Sample] = []
        self.started = 0.0
        self.started_wall = datetime.now(UTC)  # on the clock that stamps submitted_at
        self.stopping = asyncio.Event()

    async def run(self, stack_pid: int | None, services: dict[str, int]) -> SoakResult:
        await migrate(self.database_url)
        await start_group_at_end(self.kafka, self.stats_group, self.kafka.predictions_topic)
        stats = StatsProcess(
            kafka=self.kafka,
            database_url=self.database_url,
            group_id=self.stats_group,
            log_path=self.work / "soak-stats.log",
            extra_env={"RS_STATS_DRIFT_ENABLED": "false"},
        )
        async with stats:
            await stats.wait_ready(timeout_s=120)
            assert stats.process is not None
            processes = stack_processes(stack_pid, services | {"stats": stats.process.pid})
            conn = await asyncpg.connect(self.database_url)
            try:
                return await self._soak(processes, conn)
            finally:
                await conn.close()

    async def _soak(self, processes: dict[str, list[int]], conn: asyncpg.Connection) -> SoakResult:
        producer = AIOKafkaProducer(**self.kafka.client(), acks="all", linger_ms=5)
        admin = AIOKafkaAdminClient(**self.kafka.client())
        reader, *_ = await asyncio.gather(
            reader_at_end(self.kafka), producer.start(), admin.start()
        )
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
        )
        try:
            self.started, self.started_wall = time.perf_counter(), datetime.now(UTC)
            reading = asyncio.create_task(self._read(reader))
            sampling = asyncio.create_task(self._sample(processes, conn, admin, reader))
            rest_calls: set[asyncio.Task[None]] = set()
            await asyncio.gather(
                self._produce(producer), self._rest(http, rest_calls), self._progress()
            )
            drain_started = time.perf_counter()
            await asyncio.gather(*rest_calls)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(conn), DRAIN_TIMEOUT_S)
            drain_s = time.perf_counter() - drain_started
            self.stopping.set()
            reading.cancel()
            await asyncio.gather(reading, sampling, return_exceptions=True)
            stored, counted = await self._stored(conn)
            into_postgresql = await self._into_postgresql(conn)
        finally:
            await http.close()
            await asyncio.gather(reader.stop(), producer.stop(), admin.close())
        return SoakResult(self.plan, self.k, self.r, self.samples, len(self.pending), stored,
                          counted, drain_s, into_postgresql)  # fmt: skip

    def _due(self, rate: float) -> int:
        return int(rate * (time.perf_counter() - self.started))

    async def _produce(self, producer: AIOKafkaProducer) -> None:
        """Fixed-rate ReviewRequests straight to the requests topic, as a producer service
        would publish them."""
        if self.plan.kafka_rate <= 0:
            return
        while (now := time.perf_counter()) - self.started < self.plan.seconds:
            for _ in range(self._due(self.plan.kafka_rate) - self.k.sent):
                request = ReviewRequest(text=next(self.texts), source=Source.PRODUCER)
                key = request.request_id.encode()
                self.pending[key] = time.perf_counter()
                self.k.sent += 1
                try:
                    await producer.send(self.kafka.requests_topic, encode(request), key=key)
                except Exception as exc:  # a refused send is a lost request, counted as such
                    self.k.fail(type(exc).__name__)
                    self.pending.pop(key, None)
            await asyncio.sleep(max(0.0, TICK_S - (time.perf_counter() - now)))
        await producer.flush()

    async def _read(self, reader: AIOKafkaConsumer) -> None:
        while True:
            batches = await reader.getmany(timeout_ms=200)
            now = time.perf_counter()
            for messages in batches.values():
                for message in messages:
                    sent = self.pending.pop(message.key, None) if message.key else None
                    if sent is not None:
                        self.k.sent_at.append(sent - self.started)
                        self.k.latency_ms.append((now - sent) * 1000)

    async def _rest(self, http: aiohttp.ClientSession, calls: set[asyncio.Task[None]]) -> None:
        if self.plan.rest_rate <= 0:
            return
        url = f"{self.gateway_url}/v1/classify"

        async def call(text: str) -> None:
            sent = time.perf_counter()
            try:
                async with http.post(url, json={"text": text}) as response:
                    await response.read()
                    if response.status != 200:
                        self.r.fail(str(response.status))
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.r.fail(type(exc).__name__)
                return
            self.r.sent_at.append(sent - self.started)
            self.r.latency_ms.append((time.perf_counter() - sent) * 1000)

        while (now := time.perf_counter()) - self.started < self.plan.seconds:
            for _ in range(self._due(self.plan.rest_rate) - self.r.sent - self.r.shed):
                if len(calls) >= REST_IN_FLIGHT:
                    self.r.shed += 1
                    continue
                self.r.sent += 1
                task = asyncio.create_task(call(next(self.texts)))
                calls.add(task)
                task.add_done_callback(calls.discard)
            await asyncio.sleep(max(0.0, TICK_S - (time.perf_counter() - now)))

    async def _progress(self) -> None:
        minutes = int(self.plan.seconds // 60)
        for minute in range(1, minutes + 1):
            await asyncio.sleep(self.started + 60 * minute - time.perf_counter())
            self.echo(
                f"9 soak: minute {minute}/{minutes}: {self.k.sent} Kafka and {self.r.sent} REST "
                f"requests sent, {len(self.pending)} Kafka requests unanswered"
            )

    async def _sample(
        self,
        processes: dict[str, list[int]],
        conn: asyncpg.Connection,
        admin: AIOKafkaAdminClient,
        ends: AIOKafkaConsumer,
    ) -> None:
        while not self.stopping.is_set():
            at = time.perf_counter() - self.started
            with contextlib.suppress(Exception):  # a sample lost to a busy broker is skipped
                worker_lag, stats_lag, counted = await asyncio.gather(
                    consumer_lag(admin, ends, self.worker_group, self.kafka.requests_topic),
                    consumer_lag(admin, ends, self.stats_group, self.kafka.predictions_topic),
                    self._counted(conn),
                )
                answered = self._answered()
                self.samples.append(
                    Sample(at, worker_lag, stats_lag, max(0, answered - counted),
                           rss_mib(processes))
                )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.plan.sample_s)

    def _answered(self) -> int:
        return len(self.k.latency_ms) + len(self.r.latency_ms)

    async def _counted(self, conn: asyncpg.Connection) -> int:
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(predictions), 0) FROM window_stats"
                " WHERE model_name = $1 AND granularity = 'minute'",
                self.model_name,
            )
        )

    async def _stored(self, conn: asyncpg.Connection) -> tuple[int, int]:
        stored = await conn.fetchval(
            "SELECT count(*) FROM predictions WHERE model_name = $1", self.model_name
        )
        return int(stored), await self._counted(conn)

    async def _into_postgresql(self, conn: asyncpg.Connection) -> Timeline:
        """Every stored prediction's way from its request's ``submitted_at`` (the producer's or
        the gateway's clock, this machine's) to its row's ``recorded_at``: the start of the
        transaction that wrote it (``now()``), which commits a few milliseconds later."""
        rows = await conn.fetch(
            "SELECT extract(epoch FROM submitted_at - $2)::float8 AS sent_s,"
            " extract(epoch FROM recorded_at - submitted_at)::float8 * 1000 AS took_ms"
            " FROM predictions WHERE model_name = $1 AND submitted_at >= $2",
            self.model_name,
            self.started_wall,
        )
        return Timeline([r["sent_s"] for r in rows], [r["took_ms"] for r in rows])

    async def _drained(self, conn: asyncpg.Connection) -> None:
        """Until every Kafka request is answered and every answer counted (polled: the count
        lives in PostgreSQL)."""
        while True:
            if not self.pending and await self._counted(conn) >= self._answered():
                return
            await asyncio.sleep(1.0)


# -- the picture -------------------------------------------------------------------------------


def plot(result: SoakResult, path: Path) -> None:
    """Four panels over the soak's time line: latency, answers per second, lags, memory."""
    figure = Figure(figsize=(11, 12))
    latency, rate, lags, memory = figure.subplots(4, 1, sharex=True)
    bin_s = 10.0
    edges = np.arange(0.0, result.plan.seconds + bin_s, bin_s)
    names = {"kafka": "Kafka", "rest": "REST", "stored": "into PostgreSQL"}
    for key, log in result.timelines():
        name = names[key]
        at = np.asarray(log.sent_at)
        ms = np.asarray(log.latency_ms)
        if not len(at):
            continue
        which = np.digitize(at, edges) - 1
        for q, style in ((50, "-"), (99, "--")):
            values = [
                np.percentile(ms[which == i], q) if np.any(which == i) else np.nan
                for i in range(len(edges) - 1)
            ]
            latency.plot(edges[:-1] / 60, values, style, label=f"{name} p{q}")
        counts, _ = np.histogram(at, edges)
        done = "stored" if key == "stored" else "answered"
        rate.plot(edges[:-1] / 60, counts / bin_s, label=f"{name}: {done}/s (by send time)")
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    latency.legend(fontsize=8)
    rate.set_ylabel("requests/s")
    rate.legend(fontsize=8)
    at_min = [s.at_s / 60 for s in result.samples]
    lags.plot(at_min, [s.worker_lag for s in result.samples], label="workers' lag (requests)")
    lags.plot(at_min, [s.stats_lag for s in result.samples], label="stats lag (predictions)")
    lags.plot(at_min, [s.uncounted for s in result.samples], label="answered, not yet counted")
    lags.set_ylabel("records")
    lags.legend(fontsize=8)
    series: dict[str, list[float]] = defaultdict(list)
    for s in result.samples:
        for name, mib in s.rss_mib.items():
            series[name].append(mib)
    for name, values in sorted(series.items()):
        memory.plot(at_min[: len(values)], values, label=name)
    memory.set_ylabel("RSS (MiB)")
    memory.set_xlabel("minutes")
    memory.legend(fontsize=8, ncol=3)
    figure.suptitle(
        f"soak: {result.plan.kafka_rate:g}/s through Kafka + {result.plan.rest_rate:g}/s REST,"
        f" {result.plan.seconds / 60:g} min; lost {result.lost}, counted twice"
        f" {result.duplicates}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
