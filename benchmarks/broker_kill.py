"""Scenario 9: one of three brokers SIGKILLed under a fixed-rate REST load.

The stack runs three KRaft nodes (``RS_STACK_KAFKA_BROKERS=3``: replication factor 3,
``min.insync.replicas`` 2), two workers, the gateway and the stats processor. Requests go to
the gateway's REST classify at a fixed rate (open loop: a slow answer does not slow the
sending, so the blip shows as it is); the broker leading the most partitions of the requests
and predictions topics is killed mid-run. Reported: p50/p99 per window of seconds since the
kill, by when each request was sent; the failed requests; and, once the stats processor has
caught up, the answered requests missing from PostgreSQL (lost) and the predictions counted
more than once in its windows (duplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import numpy as np

from benchmarks.clients import rest_client
from benchmarks.stack import BenchStack, Service
from contracts import KafkaSettings
from deploy.local.kafka_nodes import KafkaNodes, busiest_leader
from deploy.local.processes import StatsProcess, wait_for
from inference import Bundle


@dataclass(frozen=True)
class Shot:
    sent_s: float  # since the kill (negative: before it)
    latency_ms: float | None  # None: failed
    request_id: str | None


@dataclass
class KillResult:
    victim: int
    rate: float
    shots: list[Shot] = field(default_factory=list)
    answered_ids: set[str] = field(default_factory=set)
    stored: int = 0  # predictions in PostgreSQL for the model
    counted: int = 0  # the predictions its minute windows counted
    lost: int = 0  # answered to the client, absent from PostgreSQL

    @property
    def failed(self) -> int:
        return sum(shot.latency_ms is None for shot in self.shots)

    @property
    def duplicates(self) -> int:
        return self.counted - self.stored

    def windows(
        self, width_s: float, since_s: float, until_s: float
    ) -> list[tuple[float, list[float], int]]:
        """(start since the kill, latencies of the answered requests sent in that window, how
        many of those sent then failed), from ``since_s`` to ``until_s`` (the first and last
        windows take the few requests sent outside: the kill takes a moment)."""
        found: dict[float, tuple[list[float], list[int]]] = {}
        first = float(np.floor(since_s / width_s) * width_s)
        last = float(np.ceil(until_s / width_s) * width_s) - width_s
        for shot in self.shots:
            start = float(np.floor(shot.sent_s / width_s) * width_s)
            start = min(last, max(first, start))
            latencies, failed = found.setdefault(start, ([], [0]))
            if shot.latency_ms is None:
                failed[0] += 1
            else:
                latencies.append(shot.latency_ms)
        return [(start, ms, failed[0]) for start, (ms, failed) in sorted(found.items())]

    def p99(self, since_s: float, until_s: float) -> float:
        latencies = [
            s.latency_ms
            for s in self.shots
            if s.latency_ms is not None and since_s <= s.sent_s < until_s
        ]
        return float(np.percentile(latencies, 99)) if latencies else float("nan")


async def fixed_rate(
    url: str, texts: Sequence[str], *, rate: float, before_s: float, after_s: float, kill: Kill
) -> tuple[list[Shot], int]:
    """Send ``rate`` requests a second for ``before_s``, kill, then ``after_s`` more."""
    shots: list[tuple[float, float | None, str | None]] = []
    cycle = itertools.cycle(texts)
    async with rest_client(url) as send:

        async def one(text: str) -> None:
            started = time.perf_counter()
            try:
                answer = await send(text)
            except Exception:  # a failed request is a figure, not a crash
                shots.append((started, None, None))
                return
            latency = (time.perf_counter() - started) * 1000
            shots.append((started, latency, str(answer["request_id"])))

        tasks: set[asyncio.Task[None]] = set()
        begin = time.perf_counter()
        killed_at: float | None = None
        victim = -1
        for i in itertools.count():
            due = begin + i / rate
            if killed_at is None and due - begin >= before_s:
                victim = await kill()
                killed_at = time.perf_counter()  # the broker is gone
            if due - begin >= before_s + after_s:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(one(next(cycle)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    assert killed_at is not None
    return [Shot(t - killed_at, latency, rid) for t, latency, rid in shots], victim


class Kill:
    """SIGKILL the broker leading the most partitions of the requests and predictions topics."""

    def __init__(self, nodes: KafkaNodes, kafka: KafkaSettings) -> None:
        self.nodes = nodes
        self.kafka = kafka

    async def __call__(self) -> int:
        victim = await busiest_leader(self.kafka, [self.kafka.requests_topic,
                                                   self.kafka.predictions_topic])  # fmt: skip
        await asyncio.to_thread(self.nodes.kill, victim)
        return victim


async def run_broker_kill(
    work: Path,
    bundles: tuple[Bundle, Bundle],
    texts: Sequence[str],
    *,
    rate: float,
    before_s: float,
    after_s: float,
    echo: Callable[[str], None],
) -> KillResult:
    say = echo
    stack = BenchStack(work, kafka_brokers=3)
    async with stack:
        say("10 broker kill: starting a stack with three Kafka brokers...")
        await stack.start(bundles)
        assert stack.local is not None
        nodes = KafkaNodes(stack.local)
        try:
            workers: list[Service] = [stack.start_worker(), stack.start_worker()]
            gateway = stack.start_gateway()
            group = f"stats-{uuid.uuid4().hex[:8]}"
            database_url = stack.database_url
            async with StatsProcess(
                kafka=stack.kafka,
                database_url=database_url,
                group_id=group,
                log_path=work / "stats-broker-kill.log",
            ) as stats:
                await asyncio.gather(*(s.wait_ready(timeout_s=240)
                                       for s in (*workers, gateway, stats)))  # fmt: skip
                await _warm(gateway.url, texts)
                say(f"10 broker kill: {rate:g} requests/s for {before_s:g} s, kill, "
                    f"{after_s:g} s more...")  # fmt: skip
                shots, victim = await fixed_rate(
                    gateway.url, texts, rate=rate, before_s=before_s, after_s=after_s,
                    kill=Kill(nodes, stack.kafka),
                )  # fmt: skip
                result = KillResult(victim=victim, rate=rate, shots=shots)
                result.answered_ids = {s.request_id for s in shots if s.request_id}
                await _settled(result, stack.kafka, group, database_url, stack.model_name)
        finally:
            nodes.close()
    return result


async def _warm(url: str, texts: Sequence[str]) -> None:
    """Until the gateway answers (the workers have loaded the model and own partitions)."""
    async with rest_client(url) as send:

        async def answers() -> bool:
            with contextlib.suppress(Exception):
                await send(texts[0])
                return True
            return False

        await wait_for(answers, timeout_s=120, what="the gateway answers", every_s=0.5)
        for text in itertools.islice(itertools.cycle(texts), 200):
            await send(text)


async def _settled(
    result: KillResult, kafka: KafkaSettings, group: str, database_url: str, model: str
) -> None:
    """Once every answered request is in PostgreSQL (or two minutes have passed), count."""
    conn = await asyncpg.connect(database_url)
    try:

        async def stored() -> bool:
            ids = await conn.fetch(
                "SELECT request_id FROM predictions WHERE model_name = $1 "
                "AND request_id = ANY($2::text[])",
                model,
                list(result.answered_ids),
            )
            return len(ids) >= len(result.answered_ids)

        with contextlib.suppress(TimeoutError):
            await wait_for(stored, timeout_s=120, what="answered requests stored", every_s=1)
        await asyncio.sleep(3)  # a last commit interval: late duplicates would show now
        found = await conn.fetch(
            "SELECT request_id FROM predictions WHERE model_name = $1 "
            "AND request_id = ANY($2::text[])",
            model,
            list(result.answered_ids),
        )
        result.lost = len(result.answered_ids) - len({r["request_id"] for r in found})
        result.stored = int(
            await conn.fetchval("SELECT count(*) FROM predictions WHERE model_name = $1", model)
        )
        result.counted = int(
            await conn.fetchval(
                "SELECT coalesce(sum(predictions), 0) FROM window_stats "
                "WHERE model_name = $1 AND granularity = 'minute'",
                model,
            )
        )
    finally:
        await conn.close()
