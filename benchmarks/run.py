"""All seven scenarios in one run, on the same reviews with the same load generator.

Order: the limit (no service busy), then the stack's services and ``mlflow models serve`` start;
streaming with one worker; the online scenarios, REST, WebSocket and MLflow interleaved per
repeat so that a busy neighbour on the machine hits all three alike; a second worker joins for
streaming with two workers and the hot reload; last, the peak memory of what ran. Explaining
(scenario 7) runs in process right after the limit, before any service is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.breakdown import TURN
from benchmarks.breakdown import measure as breakdown
from benchmarks.broker_kill import run_broker_kill
from benchmarks.clients import mlflow_client, rest_client, websocket_client
from benchmarks.data import DEFAULT_REVIEWS, load_reviews
from benchmarks.explain_latency import ACCURATE_MAX_LENGTH, explain_ms, untrained_accurate_bundle
from benchmarks.imports import ALL_OF_THE_WORKER, import_costs
from benchmarks.limit import measure_limit, measure_preprocessing
from benchmarks.load import LoadResult, Send, closed_loop, cycled
from benchmarks.mlflow_peer import DEFAULTS, PeerOptions, mlflow_serve, registered_uri, tuned
from benchmarks.report import Report
from benchmarks.soak import REST_IN_FLIGHT, Soak, SoakPlan, SoakResult, plot
from benchmarks.soak_rate import KAFKA_IN_FLIGHT, mix_maximum
from benchmarks.stack import (
    FAST_BUCKETS,
    BenchStack,
    Service,
    free_port,
    make_bundles,
    tree_peak_rss_mib,
    workdir,
)
from benchmarks.stats_throughput import one_run as stats_run
from benchmarks.streaming import burst
from benchmarks.timeline import Marks
from inference import OnnxPredictor, WordPiece, load_bundle
from inference.synthetic import make_fast_bundle
from registry_watcher.settings import Settings as WatcherSettings
from runtime.database import DatabaseSettings
from workers.settings import Settings as WorkerSettings

log = logging.getLogger(__name__)

SCENARIOS = (
    "limit", "streaming", "rest", "mlflow", "reload", "memory", "explain", "stats", "soak",
    "broker-kill",
)  # fmt: skip
# A quick run leaves out what takes minutes of its own: three Kafka JVMs starting on a small
# machine (ask for it with --scenarios broker-kill).
QUICK_SKIPS = ("broker-kill",)
STACK_SCENARIOS = ("streaming", "rest", "mlflow", "reload", "memory", "stats", "soak")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".artifacts" / "bench"
SETTLE_CONCURRENCY = 32
PEER, PEER_TUNED = "4 mlflow models serve", "4 mlflow models serve, tuned"
PEER_SHORT = {PEER: "mlflow", PEER_TUNED: "mlflow tuned"}
STATS_BATCH_MAX = 2000  # the stats processor's default
STEADY_LOAD_S = 10.0  # of the reload scenario's load before its first move


@dataclass
class Options:
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    repeats: int = 3
    requests: int = 400  # per online run (per concurrency level and repeat)
    # Uncounted requests per online transport before any is measured: the JVM broker compiles
    # its hot paths over the first tens of thousands of requests (C2 takes half its CPU until
    # then), and a deployed broker is always past that. Every transport gets the same.
    settle_requests: int = 5_000
    burst: int = 20_000  # reviews per streaming burst
    concurrency: list[int] = field(default_factory=lambda: [1, 16, 64])
    reload_concurrency: int = 8
    explain_reviews: int = 200  # reviews explained by the fast model
    explain_reviews_accurate: int = 5  # occlusion: one encoder row per word, ~10 s a review
    accurate_bundle: Path | None = None  # default: the pretrained encoder with a random head
    stats_records: int = 50_000  # predictions through the stats path, per run
    stats_processors: list[int] = field(default_factory=lambda: [1, 2])  # in one group, per run
    stats_feedback_every: int = 10  # feedback (a label) for every N-th prediction; 0: none
    kill_rate: float = 40.0  # REST requests a second while a broker is killed
    kill_before_s: float = 20.0  # of load before the kill
    kill_after_s: float = 40.0  # of load after it
    watcher_poll_s: float | None = None  # None: the watcher's default
    soak_minutes: float = 10.0
    # Requests/s of the soak, REST and Kafka together; default: half of each path's maximum
    # with both pushed at once, measured first for soak_max_seconds (benchmarks.soak_rate).
    soak_rate: float | None = None
    soak_max_seconds: float = 30.0
    bundle: Path | None = None
    reviews: Path = DEFAULT_REVIEWS
    output: Path | None = None
    own_stack: bool = True
    profile_workers: Path | None = None
    quick: bool = False

    @classmethod
    def quick_mode(cls, **overrides: Any) -> Options:
        return cls(
            scenarios=[name for name in SCENARIOS if name not in QUICK_SKIPS],
            repeats=1,
            requests=64,
            settle_requests=64,
            burst=2000,
            concurrency=[1, 16],
            explain_reviews=40,
            explain_reviews_accurate=2,
            stats_records=2000,
            stats_processors=[1],
            soak_minutes=0.25,
            soak_max_seconds=5.0,
            kill_before_s=10.0,
            kill_after_s=20.0,
            quick=True,
        ).replace(**overrides)

    def replace(self, **overrides: Any) -> Options:
        return Options(**(asdict(self) | {k: v for k, v in overrides.items() if v is not None}))


Echo = Callable[[str], None]


def peer_client(url: str, concurrency: int) -> Any:
    return mlflow_client(url)


class Run:
    def __init__(self, options: Options, echo: Echo) -> None:
        self.o = options
        self.echo = echo
        self.report = Report()
        self.texts = [text for text, _ in load_reviews(options.reviews)]
        self.work = workdir()
        self.bundles = make_bundles(self.work, options.bundle)
        self.worker_batch = WorkerSettings().max_batch_size
        self.stack = BenchStack(
            self.work, own_stack=options.own_stack, profile_dir=options.profile_workers
        )
        self.workers: list[Service] = []
        self.gateway: Service | None = None
        # ``mlflow models serve`` by name: at its defaults, and tuned for this machine.
        self.peers: dict[str, tuple[str, int]] = {}

    def wants(self, *names: str) -> bool:
        return any(n in self.o.scenarios for n in names)

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> Report:
        r = self.report
        r.notes.append(f"model: {self.bundles[2]}")
        r.notes.append(f"reviews: {self.o.reviews} ({len(self.texts)} texts, cycled)")
        if self.wants("limit"):
            self.echo("1 limit: in-process preprocessing and ONNX Runtime...")
            self.limit()
        if self.wants("explain"):
            self.echo("7 explain: one explanation per review, per family, in process...")
            self.explain()
        if self.wants(*STACK_SCENARIOS):
            await self.on_the_stack()
        if self.wants("broker-kill"):
            await self.broker_kill()
        self.targets()
        return r

    async def on_the_stack(self) -> None:
        """The scenarios on one stack (one broker) with the services."""
        async with self.stack, contextlib.AsyncExitStack() as peers:
            self.echo("starting the stack on free ports and registering the model...")
            await self.stack.start(self.bundles[:2])
            if self.wants("mlflow"):
                self.echo("starting mlflow models serve...")
                await peers.enter_async_context(self.peer(PEER, DEFAULTS))
                await peers.enter_async_context(self.peer(PEER_TUNED, tuned()))
            await self.start_services(workers=1)
            if self.wants("streaming"):
                await self.streaming(1)
            if self.wants("rest", "mlflow"):
                await self.online()
            if self.wants("streaming", "reload", "soak"):
                self.echo("a second worker joins...")
                await self.start_services(workers=2)
            if self.wants("streaming"):
                await self.streaming(2)
            if self.wants("reload"):
                await self.reload()
            if self.wants("memory"):
                self.memory()
            if self.wants("stats"):
                await self.stats_path()
            if self.wants("soak"):
                await self.soak()

    async def start_services(self, workers: int) -> None:
        s = self.stack
        starting = []
        while len(self.workers) < workers:
            self.workers.append(s.start_worker())
            starting.append(self.workers[-1])
        if self.gateway is None and self.wants("rest", "reload", "memory", "soak"):
            self.gateway = s.start_gateway()
            starting.append(self.gateway)
        await asyncio.gather(*(x.wait_ready(timeout_s=180) for x in starting))

    @contextlib.asynccontextmanager
    async def peer(self, name: str, options: PeerOptions) -> Any:
        """``mlflow models serve`` of the version the workers start on (the alias names it
        until the reload scenario, and the peer loads it once), until the run ends."""
        uri = registered_uri(self.stack.model_name, "production")
        serving = mlflow_serve(uri, free_port(), self.stack.tracking_uri, options)
        served = await asyncio.to_thread(serving.__enter__)
        self.peers[name] = (served.url, served.pid)
        self.report.notes.append(f"{name}: {options.label}")
        try:
            yield served
        finally:
            await asyncio.to_thread(serving.__exit__, None, None, None)

    # -- 1 the limit -------------------------------------------------------------------------

    def limit(self) -> None:
        predictor = OnnxPredictor(self.bundles[0])  # the worker's thread settings: 1 and 1
        texts = cycled(self.texts, self.o.burst)
        measure_limit(predictor, texts[: self.worker_batch * 4], batch_size=self.worker_batch)
        runs = [
            measure_limit(predictor, texts, batch_size=self.worker_batch)
            for _ in range(self.o.repeats)
        ]
        note = f"batches of {self.worker_batch}, 1 ORT thread"
        metrics = [
            ("preprocessing", "preprocessing alone"),
            ("inference", "inference alone"),
            ("end_to_end", "preprocessing + inference"),
        ]
        if "preprocessing_before" in runs[0]:
            metrics.append(("preprocessing_before", "preprocessing alone, row by row (before)"))
        for key, metric in metrics:
            self.report.add("1 limit (in-process)", metric, "reviews/s",
                            [x[key] for x in runs], note)  # fmt: skip
        if "preprocessing_before" in runs[0]:
            self.report.add("1 limit (in-process)", "preprocessing, batch / row by row", "x",
                            [x["preprocessing"] / x["preprocessing_before"] for x in runs],
                            "the same texts, the same ids")  # fmt: skip
        if self.bundles[0].family == "fast":
            self.accurate_preprocessing(texts)

    def accurate_preprocessing(self, texts: Sequence[str]) -> None:
        """The other family's preprocessing (WordPiece, Rust ``tokenizers``) on the same texts."""
        from training.families import minilm_dir  # the training extra, as scenario 7

        wordpiece = WordPiece(minilm_dir() / "tokenizer.json", max_length=ACCURATE_MAX_LENGTH)
        some = texts[: self.worker_batch * 8]  # tens of times slower than the fast path
        figures = [
            measure_preprocessing(wordpiece, some, batch_size=self.worker_batch)
            for _ in range(self.o.repeats)
        ]
        self.report.add("1 limit (in-process)", "preprocessing alone, accurate (WordPiece)",
                        "reviews/s", figures, f"{len(some)} reviews, max_length "
                        f"{ACCURATE_MAX_LENGTH}; tokenizers' own threads")  # fmt: skip

    # -- 7 explaining ------------------------------------------------------------------------

    def explain(self) -> None:
        """Explain latency of the run's bundle's family and of the other family."""
        bundles = {self.bundles[0].family: self.bundles[0]}
        notes = {family: "" for family in ("fast", "accurate")}
        if "accurate" not in bundles:
            if self.o.accurate_bundle is not None:
                bundles["accurate"] = load_bundle(self.o.accurate_bundle)
            else:
                bundles["accurate"] = untrained_accurate_bundle(self.work / "accurate")
                notes["accurate"] = f"; untrained head, max_length {ACCURATE_MAX_LENGTH}"
        if "fast" not in bundles:
            bundles["fast"] = make_fast_bundle(self.work / "fast-explain", buckets=FAST_BUCKETS)
        for family, bundle in bundles.items():
            count = self.o.explain_reviews
            if family == "accurate":
                count = self.o.explain_reviews_accurate
            ms = explain_ms(bundle, cycled(self.texts, count))
            for q in (50, 95):
                self.report.add(f"7 explain, {family}", f"p{q} latency per review", "ms",
                                [float(np.percentile(ms, q))],
                                f"{count} reviews, 1 ORT thread{notes[family]}")  # fmt: skip

    # -- 8 the stats path --------------------------------------------------------------------

    async def stats_path(self) -> None:
        """The stats processors into PostgreSQL, without and then with the drift monitor, one
        and then more in one group (each run's records spread over them)."""
        self.echo("8 stats path: the stats processors without and with the drift monitor...")
        database = self.stack.env.get("DATABASE_URL") or DatabaseSettings().url.get_secret_value()
        for monitor in (False, True):
            for n in self.o.stats_processors:
                measured = await stats_run(
                    self.stack.kafka.bootstrap_servers, database, self.o.stats_records,
                    STATS_BATCH_MAX, self.work, monitor=monitor, echo=self.echo, processors=n,
                    feedback_every=self.o.stats_feedback_every,
                )  # fmt: skip
                run = measured.processed
                which = f"{'on' if monitor else 'off'}" + (f", {n} processors" if n > 1 else "")
                self.report.add("8 stats path", f"drift monitor {which}", "records/s", [run.rate],
                                f"{run.records} records ({self.o.stats_records} predictions, "
                                "the rest feedback), Kafka -> PostgreSQL, 10% to 90% stored, "
                                "the group settled before the load")  # fmt: skip
                self.report.add("8 stats path", f"predictions, monitor {which}", "predictions/s",
                                [run.predictions_rate], "of the records/s above")  # fmt: skip
                self.report.add("8 stats path", f"CPU/record, monitor {which}", "us",
                                [run.cpu_us], "the processors' together, user + system, "
                                "10% to 90% stored")  # fmt: skip

    # -- 9 a broker killed -------------------------------------------------------------------

    async def broker_kill(self) -> None:
        """Three brokers (a stack of its own, even with --no-own-stack: a broker of a shared
        stack is not ours to kill), REST at a fixed rate, one broker SIGKILLed mid-run."""
        o = self.o
        k = await run_broker_kill(
            self.work / "broker-kill", self.bundles[:2], self.texts, rate=o.kill_rate,
            before_s=o.kill_before_s, after_s=o.kill_after_s, echo=self.echo,
        )  # fmt: skip
        add = self.report.add
        scenario = "10 broker kill (3 brokers)"
        note = f"REST at {k.rate:g}/s, node {k.victim} SIGKILLed at 0 s"
        add(scenario, "p99 before (-10..0 s)", "ms", [k.p99(-10, 0)], note)
        add(scenario, "p99 during (0..15 s)", "ms", [k.p99(0, 15)])
        add(scenario, f"p99 after (15..{o.kill_after_s:g} s)", "ms", [k.p99(15, o.kill_after_s)])
        windows = k.windows(5, -o.kill_before_s, o.kill_after_s)
        worst = max((float(np.percentile(ms, 99)) for _, ms, _ in windows if ms), default=math.nan)
        add(scenario, "p99 blip (worst 5 s window)", "ms", [worst])
        for start, ms, failed in windows:
            p50, p99 = (float(np.percentile(ms, q)) if ms else math.nan for q in (50, 99))
            add(scenario, f"p99 sent {start:+.0f}..{start + 5:+.0f} s", "ms", [p99],
                f"p50 {p50:.0f} ms, {len(ms)} answered, {failed} failed")  # fmt: skip
        add(scenario, "failed requests", "requests", [float(k.failed)],
            f"of {len(k.shots)} sent")  # fmt: skip
        add(scenario, "answered, not in PostgreSQL", "requests", [float(k.lost)])
        add(scenario, "counted twice", "predictions", [float(k.duplicates)],
            "minute windows' sum minus stored predictions")  # fmt: skip

    # -- 2 streaming -------------------------------------------------------------------------

    async def streaming(self, workers: int) -> None:
        self.echo(f"2 streaming: bursts of {self.o.burst} reviews, {workers} worker(s)...")
        kafka = self.stack.kafka
        deadline = time.monotonic() + 90
        while True:  # warm-up: until every worker has answered (the group has settled)
            warm = await burst(kafka, cycled(self.texts, 500), timeout_s=30, decode_workers=True)
            if len(warm.worker_ids) >= workers or time.monotonic() > deadline:
                break
        bursts = [
            await burst(kafka, cycled(self.texts, self.o.burst), timeout_s=300)
            for _ in range(self.o.repeats)
        ]
        scenario = f"2 Kafka burst, {workers} worker{'s' if workers > 1 else ''}"
        self.report.add(scenario, "throughput", "reviews/s", [b.throughput for b in bursts],
                        f"{self.o.burst} per burst")  # fmt: skip
        self.report.add(scenario, "unanswered", "reviews", [b.sent - b.answered for b in bursts])
        limit = self.report.find("1 limit (in-process)", "preprocessing + inference")
        if limit is not None:
            self.report.add(scenario, "ratio to the limit", "x",
                            [b.throughput / limit.median for b in bursts])  # fmt: skip

    # -- 3 and 4 online ----------------------------------------------------------------------

    async def online(self) -> None:
        transports: list[tuple[str, Callable[[int], Any]]] = []
        if self.wants("rest") and self.gateway is not None:
            gateway = self.gateway.url
            transports.append(("3 REST", lambda c: rest_client(gateway)))
            transports.append(("3 WebSocket", lambda c: websocket_client(gateway, c)))
        for peer, (address, _) in self.peers.items():
            transports.append((peer, functools.partial(peer_client, address)))
        for name, client in transports:
            self.echo(
                f"{name}: settling with {self.o.settle_requests} uncounted requests "
                f"(and {self.o.settle_requests // 10} one at a time)"
            )
            # Then a tenth of them one at a time: a lone request takes paths of its own in the
            # broker (a fetch parked until the produce wakes it) that the JIT compiles only
            # once they run; without this, the first c=1 repeat of REST was the slowest.
            for concurrency, requests in (
                (SETTLE_CONCURRENCY, self.o.settle_requests),
                (1, self.o.settle_requests // 10),
            ):
                async with client(concurrency) as send:
                    await closed_loop(send, self.texts, concurrency=concurrency, requests=requests)
        results: dict[tuple[str, int], list[LoadResult]] = {}
        for repeat in range(self.o.repeats):
            for c in self.o.concurrency:
                for name, client in transports:
                    self.echo(f"{name}: concurrency {c}, repeat {repeat + 1}/{self.o.repeats}")
                    async with client(c) as send:
                        results.setdefault((name, c), []).append(await self._load(send, c))
        for name, _ in transports:
            for c in self.o.concurrency:
                self._online_figures(f"{name} c={c}", results[(name, c)])
        if 1 in self.o.concurrency and ("3 REST", 1) in results:
            await self.rest_breakdown(results)
        for c, (peer, short) in itertools.product(self.o.concurrency, PEER_SHORT.items()):
            peer_runs = results.get((peer, c))
            for ours in ("3 REST", "3 WebSocket"):
                if peer_runs is None or (ours, c) not in results:
                    continue
                mine = results[(ours, c)]
                scenario = f"4 ratio {ours[2:]} / {short} c={c}"
                self.report.add(
                    scenario,
                    "throughput ratio",
                    "x",
                    [a.throughput / b.throughput for a, b in zip(mine, peer_runs, strict=True)],
                )
                self.report.add(scenario, "p99 latency ratio", "x",
                                [a.percentile(99) / b.percentile(99)
                                 for a, b in zip(mine, peer_runs, strict=True)])  # fmt: skip

    async def rest_breakdown(self, results: dict[tuple[str, int], list[LoadResult]]) -> None:
        """REST at concurrency 1 taken apart (benchmarks.breakdown), against mlflow serve's p50."""
        assert self.gateway is not None
        self.echo("3 REST c=1: where the time goes, each part alone...")
        parts = await breakdown(
            gateway_url=self.gateway.url,
            kafka=self.stack.kafka,
            predictor=OnnxPredictor(self.bundles[0]),
            texts=self.texts,
            requests=max(self.o.requests, 100),
            peers={PEER_SHORT[peer]: url for peer, (url, _) in self.peers.items()},
        )
        scenario, note = "3 REST c=1, where the time goes", "p50, one request at a time"
        add, rest = self.report.add, parts.rest_ms
        add(scenario, "REST classify", "ms", [rest], note)
        add(scenario, "HTTP alone (GET /healthz)", "ms", [parts.http_ms], note)
        add(scenario, "Kafka round trip through a worker", "ms", [parts.kafka_ms], note)
        add(scenario, "  to the worker (request produced and fetched)", "ms",
            [parts.to_worker_ms], note)  # fmt: skip
        add(scenario, "  in the worker (decode, model, reply built)", "ms",
            [parts.in_worker_ms], note)  # fmt: skip
        add(scenario, "  back (prediction produced and fetched)", "ms", [parts.back_ms], note)
        add(scenario, "  the produce's acknowledgement alone", "ms", [parts.produce_ms], note)
        add(scenario, "  the model alone, in process", "ms", [parts.model_ms], note)
        add(scenario, "the gateway's own work (the rest)", "ms",
            [rest - parts.http_ms - parts.kafka_ms], "REST - HTTP - Kafka round trip")  # fmt: skip
        for short, theirs in parts.peers_ms.items():
            add(scenario, f"{short} /invocations, taking turns with REST", "ms", [theirs], note)
            add(scenario, f"REST p50 - {short} p50, taking turns", "ms", [rest - theirs],
                f"{TURN} back to back each; target: <= 1 ms")  # fmt: skip
        for peer in (PEER, PEER_TUNED):
            if (peer, 1) in results:  # the REST run's p50 against the peer's, same loads
                ours = np.median([r.percentile(50) for r in results[("3 REST", 1)]])
                theirs = np.median([r.percentile(50) for r in results[(peer, 1)]])
                add(scenario, f"REST p50 - {PEER_SHORT[peer]} p50", "ms",
                    [float(ours - theirs)], "c=1 runs above; target: <= 1 ms")  # fmt: skip

    async def _load(self, send: Send, concurrency: int) -> LoadResult:
        return await closed_loop(
            send,
            self.texts,
            concurrency=concurrency,
            requests=max(self.o.requests, concurrency * 4),
            warmup=max(concurrency * 2, 10),
        )

    def _online_figures(self, scenario: str, runs: Sequence[LoadResult]) -> None:
        add = self.report.add
        add(scenario, "throughput", "requests/s", [r.throughput for r in runs],
            f"{len(runs[0].latencies_ms) + runs[0].failures} requests per repeat")  # fmt: skip
        for q in (50, 95, 99):
            add(scenario, f"p{q} latency", "ms", [r.percentile(q) for r in runs])
        add(scenario, "failed", "requests", [float(r.failures) for r in runs])

    # -- 5 hot reload ------------------------------------------------------------------------

    async def reload(self) -> None:
        """The alias moves ``repeats`` times per path: MLflow's webhook waking the watcher, then
        a watcher that only polls; both at the watcher's default settings unless told."""
        assert self.gateway is not None
        poll_s = self.o.watcher_poll_s or WatcherSettings().poll_interval_s
        await self._steady_peaks()
        for path, webhook in (("webhook", True), ("polling only", False)):
            self.echo(f"5 hot reload ({path}) under REST load "
                      f"(concurrency {self.o.reload_concurrency})...")  # fmt: skip
            watcher = self.stack.start_watcher(self.o.watcher_poll_s, webhook=webhook)
            await watcher.wait_ready(timeout_s=180)
            await self._fetched_ahead()
            newest = max(self.stack.versions, key=int)
            seconds, failed, slow = [], [], []
            by_way: dict[str, list[float]] = {}
            steps: dict[str, list[float]] = {}
            marks: dict[str, list[float]] = {}
            async with rest_client(self.gateway.url) as send:
                for _ in range(self.o.repeats):
                    before = await self._step_seconds(watcher)
                    target = self._other_version()
                    moved, result, moved_at, call_s = await self._reload_once(send, target)
                    after = await self._step_seconds(watcher)
                    for step, total in after.items():
                        steps.setdefault(step, []).append(1000 * (total - before.get(step, 0)))
                    seconds.append(moved)
                    # To the newer version: the one checked ahead (the webhook's shortcut);
                    # back: a rollback's way, decided by the registry lookup.
                    way = "to the next version" if target == newest else "back"
                    by_way.setdefault(way, []).append(moved)
                    failed.append(float(result.failures))
                    slow.append(float(result.slower_than(1000)))
                    line = Marks.read(moved_at, watcher.log(), [w.log() for w in self.workers],
                                      self.stack.model_name, target)  # fmt: skip
                    for mark, at in (
                        ("MLflow answered the alias call", call_s),
                        ("the webhook reached the watcher", line.webhook),
                        ("the event was published", line.published),
                        ("the last worker swapped", line.swapped),
                        ("every worker answered with it", moved),
                    ):
                        if at is not None:
                            marks.setdefault(mark, []).append(1000 * at)
            watcher.stop()
            self.stack.services.remove(watcher)
            scenario = f"5 hot reload, {path}"
            note = f"watcher polls every {poll_s:g} s" + (", MLflow webhook" if webhook else "")
            self.report.add(scenario, "alias moved -> all workers new", "s", seconds, note)
            for way, values in sorted(by_way.items(), reverse=True):
                self.report.add(scenario, f"alias moved -> all workers new, {way}", "s", values)
            self.report.add(scenario, "failed requests", "requests", failed)
            self.report.add(scenario, "slow requests (> 1 s)", "requests", slow)
            for mark, values in marks.items():
                self.report.add(scenario, f"at: {mark}", "ms", values,
                                "since the alias call started (services' logs)")  # fmt: skip
            for step, values in steps.items():
                note = "per move; workers: mean of the workers"
                if step == "watcher tag":
                    note = "per move; written after the event, off the path"
                self.report.add(scenario, f"step: {step}", "ms", values, note)

    async def _fetched_ahead(self, timeout_s: float = 60) -> None:
        """A version is registered and gated well before it is promoted: wait, as that time
        would, until every worker has fetched the newest version ahead (the watcher checks
        and announces it: registry_watcher.candidates), if it is not the one serving."""
        newest = max(self.stack.versions, key=int)
        if newest == self._serving():
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fetched = [
                (await w.metrics()).get(("rs_worker_prefetched_model_version", ()), 0.0)
                for w in self.workers
            ]
            if all(v == float(newest) for v in fetched):
                return
            await asyncio.sleep(0.2)
        self.report.notes.append(f"5 hot reload: version {newest} not fetched ahead in time")

    def _serving(self) -> str:
        version = self.stack.client().get_model_version_by_alias(
            self.stack.model_name, "production"
        )
        return str(version.version)

    def _other_version(self) -> str:
        serving = self.stack.client().get_model_version_by_alias(
            self.stack.model_name, "production"
        )
        return next(v for v in self.stack.versions if v != str(serving.version))

    async def _step_seconds(self, watcher: Service) -> dict[str, float]:
        """Seconds spent so far per step of a release: the watcher's, then the workers' mean."""
        found: dict[str, float] = {}
        samples = await watcher.metrics()
        for (name, labels), value in samples.items():
            if name == "rs_watcher_release_step_seconds_sum":
                found[f"watcher {dict(labels)['step']}"] = value
        for worker in self.workers:
            for (name, labels), value in (await worker.metrics()).items():
                if name == "rs_worker_model_load_step_seconds_sum":
                    key = f"worker {dict(labels)['step']}"
                    found[key] = found.get(key, 0.0) + value / len(self.workers)
        return found

    async def _steady_peaks(self) -> None:
        """The workers' peak RSS after the reload scenario's load, before any move: what the
        moves add to it is the peak over the run (6 peak RSS, worker) minus this."""
        stop = asyncio.Event()
        seconds = STEADY_LOAD_S / 5 if self.o.quick else STEADY_LOAD_S
        assert self.gateway is not None
        async with rest_client(self.gateway.url) as send:
            load = asyncio.create_task(
                closed_loop(send, self.texts, concurrency=self.o.reload_concurrency, stop=stop)
            )
            await asyncio.sleep(seconds)
            stop.set()
            await load
        self.report.add("6 peak RSS", "worker, before any move", "MiB",
                        [w.peak_rss_mib() for w in self.workers],
                        f"VmHWM after {seconds:g} s of the reload scenario's load; "
                        "min/max over workers")  # fmt: skip

    async def _reload_once(self, send: Send, target: str) -> tuple[float, LoadResult, float, float]:
        """Steady load; move the alias once every worker answers; the seconds until every
        worker has answered with ``target``, what the load saw meanwhile, when (wall clock) the
        alias call started and the seconds MLflow took to answer it."""
        workers = len(self.workers)
        seen: set[str] = set()
        first_new: dict[str, float] = {}
        moved_at = float("inf")
        all_seen, all_new, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()

        def on_answer(finished: float, latency: float, answer: Any) -> None:
            seen.add(answer["worker_id"])
            if len(seen) >= workers:
                all_seen.set()
            if answer["model_version"] == target and finished >= moved_at:
                first_new.setdefault(answer["worker_id"], finished)
                if len(first_new) >= workers:
                    all_new.set()

        load = asyncio.create_task(
            closed_loop(send, self.texts, concurrency=self.o.reload_concurrency, stop=stop,
                        on_answer=on_answer)
        )  # fmt: skip
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_seen.wait(), 60)
            moved_at, wall = time.perf_counter(), time.time()
            await asyncio.to_thread(self.stack.move_alias, target)
            call_s = time.perf_counter() - moved_at
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_new.wait(), 60)
            await asyncio.sleep(1.0)  # one more second of load after the switch
        finally:
            stop.set()
            result = await load
        done = max(first_new.values()) if len(first_new) >= workers else float("nan")
        return done - moved_at, result, wall, call_s

    # -- 6 memory ----------------------------------------------------------------------------

    def memory(self) -> None:
        add = self.report.add
        if self.workers:
            add("6 peak RSS", "worker", "MiB", [w.peak_rss_mib() for w in self.workers],
                "VmHWM, over the whole run; min/max over workers")  # fmt: skip
        if self.gateway is not None:
            add("6 peak RSS", "gateway", "MiB", [self.gateway.peak_rss_mib()])
        for peer, (_, pid) in self.peers.items():
            add("6 peak RSS", peer[2:], "MiB", [tree_peak_rss_mib(pid)])
        self.echo("6 memory: what each of the worker's imports costs...")
        groups = ALL_OF_THE_WORKER if self.o.quick else None
        for cost in import_costs(self.bundles[0].path, groups=groups):
            if cost.missing:
                continue
            note = "RSS, alone in a fresh interpreter"
            add("6 worker imports", cost.group, "MiB", [cost.mib], note)
            add("6 worker imports", f"{cost.group}: time", "ms", [cost.ms], note)
            if cost.model_mib is not None and cost.model_peak_mib is not None:
                peak = f"peak +{cost.model_peak_mib:.1f} MiB while it loads"
                add("6 worker imports", "+ the bundle: session, reference check", "MiB",
                    [cost.model_mib], peak)  # fmt: skip

    # -- 9 soak ------------------------------------------------------------------------------

    async def soak(self) -> None:
        assert self.gateway is not None
        if self.o.soak_rate is None:
            plan = await self.soak_plan()
        else:
            # REST takes half what the gateway managed at its highest concurrency, at most a
            # quarter of the total; producers straight to Kafka the rest.
            total = self.o.soak_rate
            top = self.report.find(f"3 REST c={max(self.o.concurrency)}", "throughput")
            rest_rate = min(total / 4, top.median / 2 if top is not None else total / 10)
            plan = SoakPlan(self.o.soak_minutes * 60, kafka_rate=total - rest_rate,
                            rest_rate=rest_rate)  # fmt: skip
        self.echo(f"9 soak: {plan.seconds / 60:g} min at {plan.kafka_rate:.0f}/s through Kafka "
                  f"and {plan.rest_rate:.0f}/s REST, the stats processor counting...")  # fmt: skip
        s = self.stack
        soak = Soak(plan, kafka=s.kafka, gateway_url=self.gateway.url,
                    database_url=s.database_url or DatabaseSettings().url.get_secret_value(),
                    model_name=s.model_name, worker_group=s.model_name, texts=self.texts,
                    work=self.work, echo=self.echo)  # fmt: skip
        named = {f"worker-{i}": w for i, w in enumerate(self.workers)} | {"gateway": self.gateway}
        services = {name: x.process.pid for name, x in named.items() if x.process is not None}
        stack_pid = s.local.process.pid if s.local and s.local.process else None
        result = await soak.run(stack_pid, services)
        self.soak_figures(result)

    async def soak_plan(self) -> SoakPlan:
        """Half of each path's maximum with the other pushed at once (benchmarks.soak_rate)."""
        assert self.gateway is not None
        seconds, concurrency = self.o.soak_max_seconds, max(self.o.concurrency)
        self.echo(f"9 soak: the maximum, Kafka ({KAFKA_IN_FLIGHT} in flight) and REST "
                  f"(c={concurrency}) pushed at once for {seconds:g} s...")  # fmt: skip
        mix = await mix_maximum(self.stack.kafka, self.gateway.url, self.texts, seconds=seconds,
                                rest_concurrency=concurrency)  # fmt: skip
        scenario = "9 soak, the maximum"
        note = f"closed loop, both paths at once for {seconds:g} s; the soak sends half"
        for path, run in (("Kafka", mix.kafka), ("REST", mix.rest)):
            self.report.add(scenario, f"{path} answered", "requests/s", [run.throughput], note)
            self.report.add(scenario, f"{path} p99 latency", "ms", [run.percentile(99)],
                            f"{run.failures} failed")  # fmt: skip
        return SoakPlan(self.o.soak_minutes * 60, kafka_rate=mix.kafka.throughput / 2,
                        rest_rate=mix.rest.throughput / 2)  # fmt: skip

    def soak_figures(self, result: SoakResult) -> None:
        add, scenario = self.report.add, "9 soak"
        plan = result.plan
        add(scenario, "Kafka requests sent", "requests/s", [result.kafka.sent / plan.seconds],
            f"fixed rate {plan.kafka_rate:.0f}/s for {plan.seconds / 60:g} min")  # fmt: skip
        add(scenario, "REST requests sent", "requests/s", [result.rest.sent / plan.seconds],
            f"fixed rate {plan.rest_rate:.0f}/s, {result.rest.shed} shed "
            f"(over {REST_IN_FLIGHT} in flight)")  # fmt: skip
        minutes = result.per_minute()
        for path in ("kafka", "rest"):
            for q in (50, 99):
                add(scenario, f"{path} p{q} latency per minute", "ms",
                    [m[f"{path}_p{q}_ms"] for m in minutes],
                    "median, best and worst of the minutes")  # fmt: skip
        for q in (50, 99):
            add(scenario, f"produced -> row in PostgreSQL p{q} per minute", "ms",
                [m[f"stored_p{q}_ms"] for m in minutes],
                "submitted_at to recorded_at, by send minute; median, best and worst")  # fmt: skip
        add(scenario, "rows into PostgreSQL per minute", "rows/s",
            [m["stored_per_s"] for m in minutes],
            "by the minute the request was sent; median, best and worst")  # fmt: skip
        add(scenario, "lost (unanswered or not stored)", "requests", [float(result.lost)])
        add(
            scenario, "  of which unanswered Kafka requests", "requests", [float(result.unanswered)]
        )
        add(scenario, "  of which failed sends (Kafka, REST)", "requests",
            [float(result.kafka.failed + result.rest.failed)],
            f"Kafka {result.kafka.errors or 0}, REST {result.rest.errors or 0}")  # fmt: skip
        add(scenario, "  of which answered, not in PostgreSQL", "requests",
            [float(max(0, result.answered - result.stored))])  # fmt: skip
        add(scenario, "counted twice", "predictions", [float(result.duplicates)])
        add(scenario, "workers' lag, max per minute", "records",
            [m["worker_lag_max"] for m in minutes])  # fmt: skip
        add(scenario, "stats lag, max per minute", "records",
            [m["stats_lag_max"] for m in minutes])  # fmt: skip
        add(scenario, "drain after the load stopped", "s", [result.drain_s],
            "until every answer was counted in PostgreSQL")  # fmt: skip
        for name, growth in sorted(result.rss_growth_mib().items()):
            add(scenario, f"RSS growth, {name}", "MiB", [growth],
                "mean of the last fifth of the samples minus the first fifth's")  # fmt: skip
        png = ARTIFACTS / f"soak-{time.strftime('%Y%m%dT%H%M%S')}.png"
        plot(result, png)
        self.report.notes.append(f"soak time line: {png}")
        for m in minutes:
            self.report.notes.append(
                f"soak minute {m['minute']:.0f}: Kafka p50/p99 {m['kafka_p50_ms']:.1f}/"
                f"{m['kafka_p99_ms']:.1f} ms, REST p50/p99 {m['rest_p50_ms']:.1f}/"
                f"{m['rest_p99_ms']:.1f} ms, into PostgreSQL p50/p99 {m['stored_p50_ms']:.1f}/"
                f"{m['stored_p99_ms']:.1f} ms, lags (workers/stats/uncounted) "
                f"{m['worker_lag_max']:.0f}/{m['stats_lag_max']:.0f}/{m['uncounted_max']:.0f}"
            )

    # -- verdicts ----------------------------------------------------------------------------

    def targets(self) -> None:
        r = self.report
        verdicts = []
        stream = r.find("2 Kafka burst, 1 worker", "throughput")
        ratio = r.find("2 Kafka burst, 1 worker", "ratio to the limit")
        if stream is not None:
            ok = stream.median >= 5000 and (ratio is None or ratio.median >= 0.25)
            verdicts.append(f"streaming >= 5000/s and >= 25% of the limit (1 worker): "
                            f"{'met' if ok else 'missed'}")  # fmt: skip
        for c, short in itertools.product(self.o.concurrency, PEER_SHORT.values()):
            t = r.find(f"4 ratio REST / {short} c={c}", "throughput ratio")
            p = r.find(f"4 ratio REST / {short} c={c}", "p99 latency ratio")
            if t is not None and p is not None:
                ok = t.median >= 3 and p.median < 1
                verdicts.append(f"REST >= 3x {short} serve with lower p99 at c={c}: "
                                f"{'met' if ok else 'missed'}")  # fmt: skip
        moved = r.find("5 hot reload, webhook", "alias moved -> all workers new")
        failed = r.find("5 hot reload, webhook", "failed requests")
        if moved is not None and failed is not None:
            ok = max(moved.values) <= 0.5 and max(failed.values) == 0
            verdicts.append(f"hot reload <= 0.5 s (webhook, default settings), zero failed: "
                            f"{'met' if ok else 'missed'}")  # fmt: skip
        r.notes.extend(f"target {v}" for v in verdicts)

    def settings(self) -> dict[str, Any]:
        return asdict(self.o) | {
            "model": self.bundles[2],
            "worker_max_batch_size": self.worker_batch,
            "worker_settings": WorkerSettings().model_dump(exclude={"kafka", "worker_id"}),
        }
