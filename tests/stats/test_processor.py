"""The stats processor on the real broker and database, run as ``python -m stats``.

Each test knows exactly what it sent, so it asserts exact counts and accuracy; the processor
runs as a child process so that kills and restarts are real.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts import (
    DeadLetter,
    ExplainMethod,
    Explanation,
    FailureKind,
    Feedback,
    KafkaSettings,
    Prediction,
    RequestFailed,
    Source,
    Timings,
    decode,
)
from contracts import encode as encode_message
from deploy.local.launcher import ROOT, LocalStack, free_port
from deploy.local.postgres import wait_for_postgres
from gateway import readmodel as queries
from stats.roles import WRITER
from tests.conftest import unique
from tests.statsprocess import StatsProcess, caught_up, committed_offsets, wait_for

# A killed processor's partitions are reassigned after this; the broker's minimum.
FAST_FAILOVER = {"RS_STATS_SESSION_TIMEOUT_S": "6"}


@dataclass
class Scenario:
    """Predictions and the feedback that answers some of them, and what must come out."""

    prefix: str
    predictions: list[Prediction]
    feedback_before: list[Feedback] = field(default_factory=list)
    feedback_after: list[Feedback] = field(default_factory=list)

    @property
    def feedback(self) -> list[Feedback]:
        return self.feedback_before + self.feedback_after

    def true_labels(self) -> dict[str, int]:
        """The label each prediction must end with: the latest feedback given for it, a label
        sent with the request counting as feedback given when it was submitted."""
        given = [(fb.request_id, fb.given_at, fb.feedback_id, fb.label) for fb in self.feedback]
        given += [
            (p.request_id, p.submitted_at, f"{p.request_id}#label", p.user_label)
            for p in self.predictions
            if p.user_label is not None
        ]
        labels: dict[str, int] = {}
        for request_id, _, _, label in sorted(given, key=lambda g: (g[1], g[2])):
            if request_id is not None:
                labels[request_id] = label
        known = {p.request_id for p in self.predictions}
        return {rid: label for rid, label in labels.items() if rid in known}

    def expected(self) -> dict[str, dict[str, float]]:
        """Per model version: predictions, positives, labelled, correct, latency sum and max."""
        truth = self.true_labels()
        out: dict[str, dict[str, float]] = {}
        for p in self.predictions:
            e = out.setdefault(
                p.model_version,
                dict.fromkeys(
                    ("predictions", "positives", "labelled", "correct", "sum", "max", "with_label"),
                    0,
                ),
            )
            latency = p.timings.queue_ms + p.timings.inference_ms
            e["predictions"] += 1
            e["positives"] += p.label
            e["sum"] += latency
            e["max"] = max(e["max"], latency)
            e["with_label"] += p.user_label is not None
            if p.request_id in truth:
                e["labelled"] += 1
                e["correct"] += int(truth[p.request_id] == p.label)
        return out


def make_scenario(prefix: str, n: int, *, seed: int) -> Scenario:
    """n predictions over a few minute windows and two model versions; a fifth come with their
    sender's label; half get feedback, a quarter before their prediction and a quarter after;
    plus feedback that never meets a prediction, bare-text feedback, a later correction that
    wins and a replay of older feedback that must not undo it."""
    rng = random.Random(seed)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    scenario = Scenario(prefix, [])
    for i in range(n):
        rid = f"{prefix}-r{i}"
        label = rng.randint(0, 1)
        at = base + timedelta(milliseconds=700 * i)
        scenario.predictions.append(
            Prediction(
                request_id=rid,
                label=label,
                probability=0.8 if label else 0.2,
                model_name="reviewstream-sentiment",
                model_version="2" if i % 3 == 0 else "1",
                worker_id=f"w{i % 2}",
                submitted_at=at - timedelta(milliseconds=50),
                predicted_at=at,
                source=Source.PRODUCER,
                user_label=rng.randint(0, 1) if i % 5 == 1 else None,
                timings=Timings(
                    queue_ms=round(rng.uniform(0, 300), 3),
                    inference_ms=round(rng.uniform(1, 20), 3),
                    batch_size=8,
                ),
            )
        )
        if i % 2 == 0:
            truth = label if rng.random() < 0.75 else 1 - label
            fb = Feedback(
                feedback_id=f"{prefix}-f{i}",
                request_id=rid,
                label=truth,
                source=Source.REPLAY,
                given_at=at + timedelta(seconds=1),
            )
            (scenario.feedback_before if i % 4 == 0 else scenario.feedback_after).append(fb)
    for j in range(4):  # answers to requests that never come
        scenario.feedback_before.append(
            Feedback(request_id=f"{prefix}-ghost{j}", label=1, source=Source.REPLAY)
        )
    for j in range(2):  # labelled texts, no request
        scenario.feedback_before.append(
            Feedback(text=f"lovely place number {j}", label=1, source=Source.REST)
        )
    first = scenario.predictions[0]
    scenario.feedback_after.append(  # a later, contradicting answer to request 0: it wins
        Feedback(
            request_id=first.request_id,
            label=1 - first.label,
            source=Source.WS,
            given_at=first.predicted_at + timedelta(minutes=1),
        )
    )
    scenario.feedback_after.append(  # a replay of older feedback, sent after it: no effect
        Feedback(
            request_id=first.request_id,
            label=first.label,
            source=Source.REPLAY,
            given_at=first.predicted_at + timedelta(seconds=30),
        )
    )
    return scenario


def encoded(messages: Sequence[Prediction | Feedback]) -> list[tuple[bytes | None, bytes | None]]:
    """Keyed by request_id (feedback without one: by feedback_id), as the producers do."""
    out: list[tuple[bytes | None, bytes | None]] = []
    for m in messages:
        key = m.request_id if isinstance(m, Prediction) else (m.request_id or m.feedback_id)
        out.append((key.encode(), encode_message(m)))
    return out


async def produce(
    kafka: KafkaSettings,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None]],
    partition: int | None = None,
) -> None:
    producer = AIOKafkaProducer(**kafka.client(), acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def send_predictions(kafka: KafkaSettings, predictions: list[Prediction]) -> None:
    await produce(kafka, kafka.predictions_topic, list(encoded(predictions)))


async def send_feedback(kafka: KafkaSettings, feedback: list[Feedback]) -> None:
    await produce(kafka, kafka.feedback_topic, list(encoded(feedback)))


async def count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the processor writes, for before/after comparisons."""
    conn = await asyncpg.connect(url)
    try:
        tables = {
            "window_stats": "SELECT * FROM window_stats ORDER BY 1, 2, 3, 4",
            "window_latency": "SELECT * FROM window_latency ORDER BY 1, 2, 3, 4, 5",
            "predictions": "SELECT request_id, true_label, recorded_at FROM predictions ORDER BY 1",
            "feedback": "SELECT feedback_id, matched_at, recorded_at FROM feedback ORDER BY 1",
        }
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in tables.items()}
    finally:
        await conn.close()


async def assert_exact(url: str, scenario: Scenario, *, waiting: int) -> None:
    """What the database says equals what was sent, through the gateway's read side."""
    expected = scenario.expected()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        totals = {t.model_version: t for t in await queries.totals(pool)}
        assert set(totals) == set(expected)
        for version, e in expected.items():
            t = totals[version]
            assert (t.predictions, t.positives, t.labelled, t.correct, t.with_label) == (
                e["predictions"],
                e["positives"],
                e["labelled"],
                e["correct"],
                e["with_label"],
            ), version
            assert t.accuracy == pytest.approx(e["correct"] / e["labelled"])
            assert t.positive_share == pytest.approx(e["positives"] / e["predictions"])
            assert t.latency.mean_ms == pytest.approx(e["sum"] / e["predictions"])
            assert t.latency.max_ms == pytest.approx(e["max"])
            assert t.latency.p50_ms is not None
            assert 0 < t.latency.p50_ms <= t.latency.p95_ms <= e["max"]  # type: ignore[operator]

        accuracy = {a.model_version: a for a in await queries.live_accuracy(pool)}
        for version, e in expected.items():
            assert (accuracy[version].labelled, accuracy[version].correct) == (
                e["labelled"],
                e["correct"],
            )
        n = len(scenario.predictions)
        positives = sum(int(e["positives"]) for e in expected.values())
        split = await queries.label_split(pool)
        assert (split.negative, split.positive) == (n - positives, positives)

        overview = await queries.overview(pool)
        assert overview.predictions == n
        assert overview.labelled == sum(int(e["labelled"]) for e in expected.values())
        with_label = [p for p in scenario.predictions if p.user_label is not None]
        assert with_label
        assert overview.with_label == len(with_label)
        assert overview.with_label_share == pytest.approx(len(with_label) / n)
        # Every feedback record, and each label sent with a request, is one row.
        assert overview.feedback_received == len(scenario.feedback) + len(with_label)
        assert overview.feedback_waiting == waiting

        # Minute and hour windows hold the same counts; the histogram counts every prediction.
        for granularity in ("minute", "hour"):
            series = await queries.window_series(pool, granularity, limit=10_000)
            assert sum(p.predictions for p in series) == n
            assert sum(p.labelled for p in series) == overview.labelled
            assert sum(p.correct for p in series) == overview.correct
            traffic = await queries.traffic_series(pool, granularity, limit=10_000)
            per_window: Counter[datetime] = Counter()
            for point in series:
                per_window[point.window_start] += point.predictions
            assert [(t.window_start, t.predictions) for t in traffic] == sorted(per_window.items())
        minutes = await queries.window_series(pool, "minute", limit=10_000)
        assert len({p.window_start for p in minutes}) > 1  # the scenario spans several minutes
        histogram = await pool.fetchval(
            "SELECT sum(count) FROM window_latency WHERE granularity = 'minute'"
        )
        assert histogram == n

        truth = scenario.true_labels()
        stored = dict(await pool.fetch("SELECT request_id, true_label FROM predictions"))
        assert stored == {p.request_id: truth.get(p.request_id) for p in scenario.predictions}
        recent = await queries.recent_predictions(pool, limit=5)
        assert [r.request_id for r in recent] == [
            p.request_id
            for p in sorted(scenario.predictions, key=lambda p: p.predicted_at)[::-1][:5]
        ]
    finally:
        await pool.close()


def metric(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def list_topics(kafka: KafkaSettings) -> set[str]:
    admin = AIOKafkaAdminClient(**kafka.client())
    await admin.start()
    try:
        return {name for name in await admin.list_topics() if not name.startswith("__")}
    finally:
        await admin.close()


# -- the tests --------------------------------------------------------------------------------


async def test_exact_counts_with_feedback_before_and_after_and_a_replay_changes_nothing(
    kafka: KafkaSettings, database_url: str, stack: LocalStack, tmp_path: Path
) -> None:
    """As deployed: the processor connects as the writer role, which may not migrate."""
    scenario = make_scenario(unique("s"), 240, seed=1)
    group = unique("stats")
    topics_before = await list_topics(kafka)
    await send_feedback(kafka, scenario.feedback_before)

    async with StatsProcess(
        kafka=kafka,
        database_url=stack.database_url_as(WRITER.name, database_url),
        group_id=group,
        log_path=tmp_path / "stats.log",
        extra_env={"RS_STATS_MIGRATE": "false"},
    ) as processor:
        await processor.wait_ready()
        # Feedback first: stored and waiting, none matched.
        await wait_for(
            lambda: _equals(
                count(database_url, "SELECT count(*) FROM feedback"), len(scenario.feedback_before)
            ),
            timeout_s=60,
            what="feedback stored before any prediction",
        )
        assert (
            await count(database_url, "SELECT count(*) FROM feedback WHERE matched_at IS NOT NULL")
            == 0
        )

        await send_predictions(kafka, scenario.predictions)
        await wait_for(
            lambda: _equals(
                count(database_url, "SELECT count(*) FROM predictions"), len(scenario.predictions)
            ),
            timeout_s=60,
            what="every prediction stored",
        )
        await send_feedback(kafka, scenario.feedback_after)
        await wait_for(lambda: caught_up(kafka, group), timeout_s=60, what="offsets committed")
        await assert_exact(database_url, scenario, waiting=4)
        before = await snapshot(database_url)

        # The same records again, byte for byte: nothing may change.
        await send_feedback(kafka, scenario.feedback)
        await send_predictions(kafka, scenario.predictions)
        await wait_for(lambda: caught_up(kafka, group), timeout_s=60, what="replay committed")
        assert await snapshot(database_url) == before
        await assert_exact(database_url, scenario, waiting=4)

        samples = await processor.metrics()
        n, m = len(scenario.predictions), len(scenario.feedback)
        assert metric(samples, "rs_stats_records_total", kind="prediction", outcome="stored") == n
        assert (
            metric(samples, "rs_stats_records_total", kind="prediction", outcome="duplicate") == n
        )
        assert metric(samples, "rs_stats_records_total", kind="feedback", outcome="stored") == m
        assert metric(samples, "rs_stats_records_total", kind="feedback", outcome="duplicate") == m
        assert metric(samples, "rs_stats_db_up") == 1
        assert (await processor.get("/healthz")).status == 200

        # Faust created no topic of its own (no changelogs, no leader topic, no declarations).
        # (__consumer_offsets is the broker's own, created on the first commit of any group.)
        assert await list_topics(kafka) == topics_before
        assert processor.terminate() == 0, processor.log()[-3000:]
    assert "Traceback" not in processor.log()


async def test_killed_mid_stream_and_restarted_counts_exactly(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    scenario = make_scenario(unique("k"), 1200, seed=2)
    group = unique("stats")
    await send_feedback(kafka, scenario.feedback)
    await send_predictions(kafka, scenario.predictions)
    # Small batches and rare commits: at the kill, records are in PostgreSQL whose offsets are
    # not committed, so the restart must replay them.
    slow = {"RS_STATS_BATCH_MAX": "20", "RS_STATS_COMMIT_INTERVAL_S": "120", **FAST_FAILOVER}
    async with StatsProcess(
        kafka=kafka,
        database_url=database_url,
        group_id=group,
        log_path=tmp_path / "first.log",
        extra_env=slow,
    ) as first:
        await wait_for(
            lambda: _at_least(count(database_url, "SELECT count(*) FROM predictions"), 100),
            timeout_s=90,
            what="the first processor is under way",
        )
        first.kill()
    stored = await count(database_url, "SELECT count(*) FROM predictions")
    stored += await count(database_url, "SELECT count(*) FROM feedback")
    committed = sum((await committed_offsets(kafka, group)).values())
    assert committed < stored, "the kill must leave stored records whose offsets were not committed"

    async with StatsProcess(
        kafka=kafka,
        database_url=database_url,
        group_id=group,
        log_path=tmp_path / "second.log",
        extra_env=FAST_FAILOVER,
    ) as second:
        await wait_for(
            lambda: caught_up(kafka, group), timeout_s=120, what="caught up after restart"
        )
        await assert_exact(database_url, scenario, waiting=4)
        samples = await second.metrics()
        replayed = metric(samples, "rs_stats_records_total", kind="prediction", outcome="duplicate")
        replayed += metric(samples, "rs_stats_records_total", kind="feedback", outcome="duplicate")
        assert replayed > 0  # the replay happened, and changed nothing


async def test_a_backlog_is_read_in_large_batches_replays_count_once_a_bad_record_alone_dlq(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    """Everything is in Kafka before the processor starts, so it is delivered a whole fetch at
    a time (stats.fetcher) and read in batches of hundreds (stats.kafka.take_batches): every
    offset is committed, a prediction sent twice, in the same batch or far apart, is counted
    once, and a bad record among them is the only dead letter."""
    scenario = make_scenario(unique("b"), 1200, seed=5)
    preds = scenario.predictions
    records = list(encoded(preds[:600]))
    records.append((b"bad", b"not json"))
    records += list(encoded(preds[600:]))
    records += list(encoded(preds[:300]))  # a replay: the first 300 again, at the end
    records += list(encoded(preds[900:910]))  # and ten again, right after the first copy
    await send_feedback(kafka, scenario.feedback_before)
    await produce(kafka, kafka.predictions_topic, records)
    await send_feedback(kafka, scenario.feedback_after)
    group = unique("stats")

    async with StatsProcess(
        kafka=kafka,
        database_url=database_url,
        group_id=group,
        log_path=tmp_path / "stats.log",
        extra_env={"RS_STATS_BATCH_MAX": "500"},
    ) as processor:
        await wait_for(lambda: caught_up(kafka, group), timeout_s=120, what="offsets committed")
        samples = await processor.metrics()
        assert processor.alive()

    letters = await read_all(kafka, KafkaSettings.dlq(kafka.predictions_topic), 1)
    assert [base64.b64decode(letter.key or "") for letter in letters] == [b"bad"]
    assert "not JSON" in letters[0].reason
    await assert_exact(database_url, scenario, waiting=4)
    n = len(preds)
    assert metric(samples, "rs_stats_records_total", kind="prediction", outcome="stored") == n
    assert metric(samples, "rs_stats_records_total", kind="prediction", outcome="duplicate") == 310
    read = metric(samples, "rs_stats_batch_records_sum", kind="prediction")
    batches = metric(samples, "rs_stats_batch_records_count", kind="prediction")
    assert read == len(records)  # each record read once: no fetch delivered twice
    assert read / batches >= 50, f"{read:.0f} records in {batches:.0f} batches"
    assert "Traceback" not in processor.log()


async def test_two_processors_share_a_backlog_and_one_is_killed_counts_exactly(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    """Two processors in one group split the partitions of a backlog, each delivered a whole
    fetch at a time (stats.fetcher); one is killed with records stored whose offsets it never
    committed. The rebalance gives its partitions to the other, which replays them from the
    committed offsets: every record counted exactly once, every offset committed."""
    scenario = make_scenario(unique("r"), 2400, seed=6)
    group = unique("stats")
    await send_feedback(kafka, scenario.feedback)
    await send_predictions(kafka, scenario.predictions)
    slow = {"RS_STATS_BATCH_MAX": "20", "RS_STATS_COMMIT_INTERVAL_S": "120", **FAST_FAILOVER}

    processor = partial(group_member, kafka, database_url, group, tmp_path)

    async with (
        processor("survivor", FAST_FAILOVER) as survivor,
        processor("victim", slow) as victim,
    ):
        await wait_for(
            lambda: _at_least(count(database_url, "SELECT count(*) FROM predictions"), 300),
            timeout_s=120,
            what="both processors under way",
        )
        victim.kill()
        await wait_for(
            lambda: caught_up(kafka, group), timeout_s=180, what="caught up after the kill"
        )
        await assert_exact(database_url, scenario, waiting=4)
        assert survivor.alive()
    assert "Traceback" not in survivor.log()


async def test_a_second_processor_joins_a_busy_group_both_ready_all_counted_once(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    """Scaling out while under way: a second processor joins the group while the first is
    reading a backlog. Both become ready (the second is a follower of the group, whose
    coordinator learns no topic metadata of its own: see ``stats.kafka.topics_known``), both
    store records sent after the join, and everything is counted exactly once: the records
    the rebalance moved are stored by one of them, the other's replay counts as duplicates."""
    scenario = make_scenario(unique("j"), 1200, seed=8)
    group = unique("stats")
    half = len(scenario.predictions) // 2
    await send_feedback(kafka, scenario.feedback_before)
    await send_predictions(kafka, scenario.predictions[:half])

    processor = partial(group_member, kafka, database_url, group, tmp_path)

    async with processor("first", {"RS_STATS_BATCH_MAX": "20"}) as first:
        await first.wait_ready()
        await wait_for(
            lambda: _at_least(count(database_url, "SELECT count(*) FROM predictions"), 100),
            timeout_s=120,
            what="the first processor under way",
        )
        async with processor("second", {}) as second:
            await second.wait_ready()
            await first.wait_ready()
            await send_predictions(kafka, scenario.predictions[half:])
            await send_feedback(kafka, scenario.feedback_after)
            await wait_for(lambda: caught_up(kafka, group), timeout_s=180, what="caught up")
            await assert_exact(database_url, scenario, waiting=4)
            stored = [
                metric(await p.metrics(), "rs_stats_records_total", kind="prediction",
                       outcome="stored")
                for p in (first, second)
            ]  # fmt: skip
            assert all(stored), stored  # each holds predictions partitions after the join
            assert sum(stored) == len(scenario.predictions)
    assert "Traceback" not in first.log() + second.log()


async def test_database_outage_loses_nothing_and_counts_nothing_twice(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    # A PostgreSQL of this test's own: stopping the session's database would break other tests.
    url = f"postgresql://reviewstream:reviewstream@127.0.0.1:{free_port()}/reviewstream"
    postgres = _Postgres(url, tmp_path / "pg-state", tmp_path / "postgres.log")
    scenario = make_scenario(unique("o"), 300, seed=3)
    half = len(scenario.predictions) // 2
    group = unique("stats")
    try:
        async with StatsProcess(
            kafka=kafka,
            database_url=url,
            group_id=group,
            log_path=tmp_path / "stats.log",
            extra_env={"RS_STATS_RETRY_MAX_BACKOFF_S": "1"},
        ) as processor:
            # Started before its database: alive, not ready, and waiting for it.
            async def alive_not_ready() -> bool:
                if not processor.alive():
                    raise RuntimeError(processor.log()[-3000:])
                try:
                    health = await processor.get("/healthz")
                    ready = await processor.get("/readyz")
                except (aiohttp.ClientError, OSError):  # not listening yet
                    return False
                return health.status == 200 and ready.json()["checks"]["database"] is False

            await wait_for(alive_not_ready, timeout_s=90, what="alive and waiting for PostgreSQL")
            await postgres.start()
            await processor.wait_ready()
            await send_feedback(kafka, scenario.feedback_before)
            await send_predictions(kafka, scenario.predictions[:half])
            await wait_for(
                lambda: _equals(count(url, "SELECT count(*) FROM predictions"), half),
                timeout_s=60,
                what="first half stored",
            )

            postgres.stop()
            await send_predictions(kafka, scenario.predictions[half:])
            await send_feedback(kafka, scenario.feedback_after)

            async def retrying_and_not_ready() -> bool:
                samples = await processor.metrics()
                retries = sum(
                    v for (name, _), v in samples.items() if name == "rs_stats_db_retries_total"
                )
                ready = (await processor.get("/readyz")).status
                return retries > 0 and ready == 503

            await wait_for(
                retrying_and_not_ready, timeout_s=60, what="retrying while PostgreSQL is down"
            )
            assert processor.alive()
            assert metric(await processor.metrics(), "rs_stats_db_up") == 0

            await postgres.start()
            await wait_for(
                lambda: caught_up(kafka, group), timeout_s=90, what="caught up after the outage"
            )
            await assert_exact(url, scenario, waiting=4)
            await processor.wait_ready()
            assert processor.terminate() == 0
    finally:
        postgres.stop()


async def test_malformed_records_go_to_the_dead_letter_topics_with_the_reason(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    good = make_scenario(unique("d"), 3, seed=4).predictions
    answer = Feedback(request_id=good[0].request_id, label=good[0].label, source=Source.REPLAY)
    valid_json = encode_message(good[1]).decode()
    bad_predictions: list[tuple[bytes | None, bytes | None]] = [
        (b"a", b"not json"),
        (b"b", b"\xff\xfe"),
        (b"c", b"[1, 2]"),
        (b"d", valid_json.replace('"schema_version":3', '"schema_version":9').encode()),
        (b"e", valid_json.replace('"label":', '"label":7,"x":').encode()),
        (b"f", None),
    ]
    nul_text = Feedback(text="bad \x00 byte", label=0, source=Source.REST)
    nul_request = Feedback(request_id="req\x00uest", label=1, source=Source.REST)
    bad_feedback: list[tuple[bytes | None, bytes | None]] = [
        (b"g", encode_message(nul_text)),
        (b"h", encode_message(nul_request)),
    ]
    group = unique("stats")

    # Side by side: a worker not upgraded yet writes version 1, and an upgraded one answers a
    # request it refused with an error reply and an explain request with an explanation
    # (nothing to store, and no dead letter).
    version_1 = good[2].model_copy(update={"schema_version": 1})
    explained = good[2].model_copy(
        update={
            "request_id": "explained",
            "explanation": Explanation(
                method=ExplainMethod.NGRAM_SUM, base=0.1, logit=0.1, words=[]
            ),
        }
    )
    refused = RequestFailed(
        request_id="refused",
        error=FailureKind.INVALID,
        reason="text has 30000 characters, the limit is 20000",
        worker_id="w",
        submitted_at=good[0].submitted_at,
        source=Source.REST,
    )
    await produce(kafka, kafka.predictions_topic, bad_predictions[:3])
    await send_predictions(kafka, good[:2])
    await produce(
        kafka,
        kafka.predictions_topic,
        [
            (b"v1", version_1.model_dump_json(exclude={"user_label", "explanation"}).encode()),
            (b"refused", encode_message(refused)),
            (b"explained", encode_message(explained)),
        ],
    )
    await produce(kafka, kafka.predictions_topic, bad_predictions[3:])
    await produce(kafka, kafka.feedback_topic, bad_feedback[:1])
    await send_feedback(kafka, [answer])
    await produce(kafka, kafka.feedback_topic, bad_feedback[1:])

    async with StatsProcess(
        kafka=kafka, database_url=database_url, group_id=group, log_path=tmp_path / "stats.log"
    ) as processor:
        await wait_for(
            lambda: caught_up(kafka, group),
            timeout_s=90,
            what="offsets committed past the bad records",
        )
        letters = await read_all(kafka, KafkaSettings.dlq(kafka.predictions_topic), 6)
        letters += await read_all(kafka, KafkaSettings.dlq(kafka.feedback_topic), 2)
        samples = await processor.metrics()
        assert processor.alive()

    by_key = {base64.b64decode(letter.key or "").decode(): letter for letter in letters}
    assert set(by_key) == set("abcdefgh")
    reasons = {key: letter.reason for key, letter in by_key.items()}
    assert "not JSON" in reasons["a"]
    assert "not UTF-8" in reasons["b"]
    assert "JSON object" in reasons["c"]
    assert "schema_version 9" in reasons["d"]
    assert "label" in reasons["e"]
    assert "tombstone" in reasons["f"]
    for key in "gh":  # valid messages the database cannot store: refused, not retried forever
        assert by_key[key].error_type == "RecordRejected"
        assert "0x00" in reasons[key] or "\\u0000" in reasons[key] or "NUL" in reasons[key], (
            reasons[key]
        )
    for raw_key, raw in bad_predictions[:5]:
        letter = by_key[(raw_key or b"").decode()]
        assert base64.b64decode(letter.value) == raw  # byte for byte
        assert letter.topic == kafka.predictions_topic
    assert by_key["g"].topic == kafka.feedback_topic

    assert await count(database_url, "SELECT count(*) FROM predictions") == 3  # v1 among them
    assert metric(samples, "rs_stats_records_total", kind="prediction", outcome="ignored") == 2
    sent_with_label = sum(p.user_label is not None for p in good)
    assert await count(database_url, "SELECT count(*) FROM feedback") == 1 + sent_with_label
    assert (
        await count(database_url, "SELECT count(*) FROM predictions WHERE true_label IS NOT NULL")
        == 1 + sent_with_label
    )
    assert (
        metric(
            samples,
            "rs_stats_dead_letters_total",
            topic=kafka.predictions_topic,
            error_type="DecodeError",
        )
        == 6
    )
    assert (
        metric(
            samples,
            "rs_stats_dead_letters_total",
            topic=kafka.feedback_topic,
            error_type="RecordRejected",
        )
        == 2
    )


async def test_a_failing_transaction_holds_back_the_batches_read_after_it(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    """The processor writes and acknowledges batches strictly in the order read (the guard
    for any overlap of batches, see the README's "Pipelined batches"). Here batch N's
    transaction fails again and again (a trigger refuses one prediction with a serialization
    failure, retried as transient): nothing read after it is stored or committed meanwhile.
    Killed then, and restarted without the trigger, every record is counted exactly once."""
    scenario = make_scenario(unique("q"), 1200, seed=7)
    preds = scenario.predictions
    poisoned = 500
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(_POISON.format(request_id=preds[poisoned].request_id))
    finally:
        await conn.close()
    await send_feedback(kafka, scenario.feedback)
    # One partition, so that the offsets are the order the batches are read in.
    await produce(kafka, kafka.predictions_topic, list(encoded(preds)), partition=0)
    group = unique("stats")
    env = {
        "RS_STATS_BATCH_MAX": "50",
        "RS_STATS_COMMIT_INTERVAL_S": "0.2",
        "RS_STATS_RETRY_MAX_BACKOFF_S": "0.3",
        **FAST_FAILOVER,
    }

    processor = partial(group_member, kafka, database_url, group, tmp_path, env=env)

    async with processor("first") as first:

        async def stuck_on_the_poisoned_batch() -> bool:
            if not first.alive():
                raise RuntimeError(first.log()[-3000:])
            try:
                samples = await first.metrics()
            except (aiohttp.ClientError, OSError):  # not listening yet
                return False
            return metric(samples, "rs_stats_db_retries_total", kind="prediction") >= 5

        await wait_for(stuck_on_the_poisoned_batch, timeout_s=90, what="the poisoned batch retried")
        stored = await _request_ids(database_url)
        # A prefix of what was read, ending before the poisoned batch: nothing after it.
        assert stored == {p.request_id for p in preds[: len(stored)]}
        assert len(stored) <= poisoned
        committed = await committed_offsets(kafka, group)
        assert committed.get(TopicPartition(kafka.predictions_topic, 0), 0) <= len(stored)
        first.kill()

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DROP TRIGGER poison ON predictions")
    finally:
        await conn.close()
    async with processor("second") as second:
        await wait_for(
            lambda: caught_up(kafka, group), timeout_s=120, what="caught up after the restart"
        )
        await assert_exact(database_url, scenario, waiting=4)
        assert second.alive()
    assert "Traceback" not in second.log()


# A transient failure (SQLSTATE 40001, retried by the processor) for one request_id.
_POISON = """
CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.request_id = '{request_id}' THEN
        RAISE EXCEPTION 'poisoned by the test' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT ON predictions FOR EACH ROW EXECUTE FUNCTION poison();
"""


async def _request_ids(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {r["request_id"] for r in await conn.fetch("SELECT request_id FROM predictions")}
    finally:
        await conn.close()


# -- helpers ------------------------------------------------------------------------------------


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _at_least(value: Any, expected: int) -> bool:
    return bool(await value >= expected)


async def read_all(
    kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 30
) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(topic, **kafka.client(), auto_offset_reset="earliest")
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(letters) < expected:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    letters.extend(decode(r.value, DeadLetter) for r in records)
    finally:
        await consumer.stop()
    assert len(letters) == expected, letters
    return letters


class _Postgres:
    """``python -m deploy.local.postgres`` with a state folder and port of its own."""

    def __init__(self, url: str, state_dir: Path, log_path: Path) -> None:
        self.url = url
        self.env = {**os.environ, "DATABASE_URL": url, "RS_STACK_STATE_DIR": str(state_dir)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deploy.local.postgres"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def start(self) -> None:
        self.launch()
        await asyncio.wait_for(wait_for_postgres(self.url, timeout_s=120), timeout=130)
        name = urlsplit(self.url).path.lstrip("/")

        async def migrated() -> bool:
            try:
                return await count(self.url, "SELECT count(*) FROM schema_migrations") > 0
            except (OSError, asyncpg.PostgresError):
                return False

        await wait_for(migrated, timeout_s=60, what=f"database {name} created and migrated")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # To the launcher only: it passes SIGTERM on (smart shutdown: clients may leave), then
        # after 3 s SIGINT (fast shutdown), which disconnects the clients that stayed.
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def group_member(
    kafka: KafkaSettings,
    database_url: str,
    group: str,
    tmp_path: Path,
    name: str,
    env: dict[str, str],
) -> StatsProcess:
    """A processor of ``group``, logging to ``name``.log."""
    return StatsProcess(
        kafka=kafka,
        database_url=database_url,
        group_id=group,
        log_path=tmp_path / f"{name}.log",
        extra_env=env,
    )
