"""The PostgreSQL store on its own: concurrent writers, and the retention of unmatched feedback."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from contracts import Feedback, Prediction, Source, Timings
from gateway import readmodel as queries
from stats.aggregates import FeedbackRow, PredictionRow
from stats.db import _LOCK_NAMESPACE, PostgresStatsStore, create_pool
from stats.settings import Settings
from stats.store import DriftCheck


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[tuple[PostgresStatsStore, asyncpg.Pool]]:
    pool = await create_pool(database_url, max_size=8)
    try:
        yield PostgresStatsStore(pool), pool
    finally:
        await pool.close()


def prediction_row(request_id: str, label: int) -> PredictionRow:
    now = datetime.now(UTC)
    return PredictionRow.from_message(
        Prediction(
            request_id=request_id,
            label=label,
            probability=0.5,
            model_name="m",
            model_version="1",
            worker_id="w",
            submitted_at=now,
            predicted_at=now,
            source=Source.PRODUCER,
            timings=Timings(queue_ms=1.0, inference_ms=1.0, batch_size=1),
        )
    )


def feedback_row(request_id: str | None, label: int, *, text: str | None = None) -> FeedbackRow:
    return FeedbackRow.from_message(
        Feedback(request_id=request_id, text=text, label=label, source=Source.REPLAY)
    )


async def test_a_prediction_and_its_feedback_written_at_the_same_moment_pair_exactly_once(
    store: tuple[PostgresStatsStore, asyncpg.Pool],
) -> None:
    """Two transactions that cannot see each other's rows must still meet (advisory locks)."""
    stats, pool = store
    rng = random.Random(7)
    ids = [f"c{i}" for i in range(240)]
    labels = {rid: rng.randint(0, 1) for rid in ids}
    truth = {rid: rng.randint(0, 1) for rid in ids}
    writes = []
    for start in range(0, len(ids), 12):
        chunk = ids[start : start + 12]
        shuffled = rng.sample(chunk, len(chunk))
        writes.append(stats.write_predictions([prediction_row(r, labels[r]) for r in chunk]))
        writes.append(stats.write_feedback([feedback_row(r, truth[r]) for r in shuffled]))
    rng.shuffle(writes)
    results = await asyncio.gather(*writes)

    assert sum(r.labelled for r in results) == len(ids)
    row = await pool.fetchrow(
        "SELECT sum(predictions) AS p, sum(labelled) AS l, sum(correct) AS c FROM window_stats"
        " WHERE granularity = 'hour'"
    )
    assert (row["p"], row["l"]) == (len(ids), len(ids))
    assert row["c"] == sum(labels[r] == truth[r] for r in ids)
    assert await pool.fetchval("SELECT count(*) FROM feedback WHERE matched_at IS NULL") == 0
    stored = dict(await pool.fetch("SELECT request_id, true_label FROM predictions"))
    assert stored == truth


async def test_four_processors_full_batches_held_at_once_fit_in_the_lock_table(
    store: tuple[PostgresStatsStore, asyncpg.Pool], database_url: str
) -> None:
    """Each transaction holds a lock per request of its batch until it commits. Four processors,
    each writing a full predictions batch and a full feedback batch (RS_STATS_BATCH_MAX) at
    once, hold 16,000 locks together: more than PostgreSQL's default lock table
    (max_locks_per_transaction 64: 'out of shared memory'); the stack's PostgreSQL has room.
    The eight transactions are made to hold their locks at the same moment: every batch also
    carries one request whose lock sorts last (locks are taken in hash order) and which this
    test holds, so each takes all its other locks and then waits."""
    stats, pool = store
    batch = Settings().batch_max
    writers = 4
    own = [[f"held-{w}-{kind}-{i}" for i in range(batch - 1)]
           for w in range(writers) for kind in ("p", "f")]  # fmt: skip
    hashes = dict(await pool.fetch(
        "SELECT r, hashtext(r) FROM unnest($1::text[]) AS r", [r for ids in own for r in ids]
    ))  # fmt: skip
    gate = max(hashes, key=hashes.__getitem__)
    own = [[r for r in ids if r != gate] for ids in own]
    holder = await asyncpg.connect(database_url)  # beside the pool's 8, one per transaction
    try:
        await holder.execute(
            "SELECT pg_advisory_lock($1::int, hashtext($2))", _LOCK_NAMESPACE, gate
        )
        writes = [
            asyncio.ensure_future(
                stats.write_predictions([prediction_row(r, 1) for r in [*ids, gate]])
                if n % 2 == 0
                else stats.write_feedback([feedback_row(r, 1) for r in [*ids, gate]])
            )
            for n, ids in enumerate(own)
        ]
        ours = (
            "locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        waiting = f"SELECT count(*) FROM pg_locks WHERE {ours} AND NOT granted"
        async with asyncio.timeout(60):
            while await holder.fetchval(waiting) < len(own):
                assert not any(w.done() for w in writes), [
                    w.exception() for w in writes if w.done()
                ]
                await asyncio.sleep(0.05)
        held = await holder.fetchval(f"SELECT count(*) FROM pg_locks WHERE {ours}")
        assert held > 2 * writers * (batch - 2)
        await holder.execute(
            "SELECT pg_advisory_unlock($1::int, hashtext($2))", _LOCK_NAMESPACE, gate
        )
    finally:
        await holder.close()
    await asyncio.gather(*writes)
    predictions = sum(len(ids) for ids in own[::2]) + 1
    assert await pool.fetchval("SELECT count(*) FROM predictions") == predictions


async def test_unmatched_feedback_is_kept_for_the_retention_then_purged(
    store: tuple[PostgresStatsStore, asyncpg.Pool],
) -> None:
    stats, pool = store
    await stats.write_predictions([prediction_row("known", 1)])
    await stats.write_feedback(
        [
            feedback_row("known", 1),
            feedback_row("old-orphan", 0),
            feedback_row("new-orphan", 0),
            feedback_row(None, 1, text="a labelled text, no request"),
        ]
    )
    await pool.execute(
        "UPDATE feedback SET recorded_at = $1 WHERE request_id IN ('known', 'old-orphan')"
        " OR request_id IS NULL",
        datetime.now(UTC) - timedelta(hours=2),
    )
    assert await stats.purge_unmatched(older_than_s=3600) == 1
    left = {r["request_id"] for r in await pool.fetch("SELECT request_id FROM feedback")}
    # Matched feedback and bare texts are records, not waiting: only the old orphan goes.
    assert left == {"known", "new-orphan", None}

    # A prediction that arrives after the purge simply stays unlabelled; a replayed answer
    # would still count it once.
    result = await stats.write_predictions([prediction_row("old-orphan", 0)])
    assert result.labelled == 0


async def test_traffic_series_sums_every_version_per_window_and_window_series_can_be_unbounded(
    store: tuple[PostgresStatsStore, asyncpg.Pool],
) -> None:
    """What the gateway's live chart and windows endpoint read (``gateway.readmodel``)."""
    stats, pool = store
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = []
    for i, (version, label, minutes_ago) in enumerate(
        [("1", 1, 2), ("2", 0, 2), ("2", 1, 2), ("1", 0, 1), ("2", 1, 0), ("1", 1, 0)]
    ):
        at = minute - timedelta(minutes=minutes_ago)
        prediction = Prediction(
            request_id=f"t{i}", label=label, probability=0.5, model_name="m",
            model_version=version, worker_id="w", submitted_at=at, predicted_at=at,
            source=Source.PRODUCER, timings=Timings(queue_ms=1.0, inference_ms=2.0, batch_size=1),
        )  # fmt: skip
        rows.append(PredictionRow.from_message(prediction))
    await stats.write_predictions(rows)
    await stats.write_feedback([feedback_row("t0", 1), feedback_row("t1", 1)])

    traffic = await queries.traffic_series(pool, "minute")
    expected = {minute - timedelta(minutes=m): n for m, n in [(2, 3), (1, 1), (0, 2)]}
    assert [(p.window_start, p.predictions) for p in traffic] == sorted(expected.items())
    oldest = traffic[0]
    assert (oldest.positives, oldest.labelled, oldest.correct) == (2, 2, 1)
    assert [p.window_start for p in await queries.traffic_series(pool, limit=2)] == [
        minute - timedelta(minutes=1),
        minute,
    ]
    since = await queries.traffic_series(pool, since=minute - timedelta(minutes=1))
    assert [p.predictions for p in since] == [1, 2]
    hours = await queries.traffic_series(pool, "hour")
    assert sum(p.predictions for p in hours) == 6

    everything = await queries.window_series(pool, "minute", limit=None)
    assert len(everything) == 5  # (version, minute) cells
    assert len(await queries.window_series(pool, "minute", limit=2)) == 2
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await queries.traffic_series(pool, limit=0)
    with pytest.raises(ValueError, match="granularity must be one of"):
        await queries.traffic_series(pool, "week")  # type: ignore[arg-type]


SOON = datetime.now(UTC)


def given(request_id: str, label: int, seconds: float, feedback_id: str) -> FeedbackRow:
    """Feedback given ``seconds`` after this module was loaded, with its own id."""
    at = SOON + timedelta(seconds=seconds)
    return FeedbackRow(feedback_id, request_id, None, label, "ws", at)


async def window_counts(pool: asyncpg.Pool) -> tuple[int, int, int, int]:
    row = await pool.fetchrow(
        "SELECT sum(predictions) AS p, sum(labelled) AS l, sum(correct) AS c,"
        " sum(with_user_label) AS u FROM window_stats WHERE granularity = 'hour'"
    )
    return (row["p"], row["l"], row["c"], row["u"])


async def test_a_label_sent_with_the_review_is_feedback_recorded_once(
    store: tuple[PostgresStatsStore, asyncpg.Pool],
) -> None:
    stats, pool = store
    with_label = dataclasses.replace(prediction_row("u1", 1), user_label=0)
    without = prediction_row("u2", 1)
    result = await stats.write_predictions([with_label, without])
    assert (result.inserted, result.labelled) == (2, 1)
    assert await window_counts(pool) == (2, 1, 0, 1)  # the user said negative, the model positive
    rows = await pool.fetch("SELECT feedback_id, request_id, label, source FROM feedback")
    assert [tuple(r) for r in rows] == [("u1#label", "u1", 0, "producer")]

    # Redelivered (a worker retried, or the same Idempotency-Key): nothing moves.
    again = await stats.write_predictions([with_label, without])
    assert (again.inserted, again.duplicates, again.labelled) == (0, 2, 0)
    assert await window_counts(pool) == (2, 1, 0, 1)
    assert await pool.fetchval("SELECT count(*) FROM feedback") == 1

    # The user changes their mind with the "I agree" button: correct moves by exactly one.
    await stats.write_feedback([given("u1", 1, 3600, "later")])
    assert await window_counts(pool) == (2, 1, 1, 1)


async def test_the_latest_feedback_wins_and_an_older_replay_changes_nothing(
    store: tuple[PostgresStatsStore, asyncpg.Pool],
) -> None:
    stats, pool = store
    await stats.write_predictions([prediction_row("k", 1)])
    first = await stats.write_feedback([given("k", 1, 10, "f1")])
    assert first.labelled == 1
    assert await window_counts(pool) == (1, 1, 1, 0)

    correction = await stats.write_feedback([given("k", 0, 20, "f2")])
    assert correction.labelled == 1  # corrected
    assert await window_counts(pool) == (1, 1, 0, 0)  # labelled stays, correct moves by one

    replayed = await stats.write_feedback([given("k", 1, 10, "f1")])  # the same record again
    older = await stats.write_feedback([given("k", 1, 15, "f-old")])  # older than the correction
    assert (replayed.inserted, replayed.labelled, older.inserted, older.labelled) == (0, 0, 1, 0)
    assert await window_counts(pool) == (1, 1, 0, 0)
    assert await pool.fetchval("SELECT true_label FROM predictions WHERE request_id = 'k'") == 0

    # Feedback waiting for its prediction: the newest of them wins when the prediction comes.
    await stats.write_feedback([given("w", 0, 30, "w-new"), given("w", 1, 5, "w-old")])
    await stats.write_predictions([prediction_row("w", 0)])
    assert await pool.fetchval("SELECT true_label FROM predictions WHERE request_id = 'w'") == 0
    assert await window_counts(pool) == (2, 2, 1, 0)


async def test_concurrent_corrections_leave_the_aggregates_equal_to_a_recount(
    store: tuple[PostgresStatsStore, asyncpg.Pool],
) -> None:
    """Many writers, feedback in any order and some before its prediction: the windows always
    agree with the labels the predictions end with, and each ends with its latest feedback."""
    stats, pool = store
    rng = random.Random(11)
    ids = [f"x{i}" for i in range(120)]
    predictions = [
        dataclasses.replace(
            prediction_row(r, rng.randint(0, 1)),
            user_label=rng.choice([None, 0, 1]),
            submitted_at=SOON + timedelta(seconds=30),
        )
        for r in ids
    ]
    feedback = [
        given(r, rng.randint(0, 1), rng.uniform(0, 60), f"{r}-{k}") for r in ids for k in range(3)
    ]
    rng.shuffle(feedback)
    writes = [stats.write_predictions(predictions[i : i + 10]) for i in range(0, len(ids), 10)]
    writes += [stats.write_feedback(feedback[i : i + 9]) for i in range(0, len(feedback), 9)]
    rng.shuffle(writes)
    await asyncio.gather(*writes)

    latest: dict[str, tuple[datetime, str, int]] = {}
    for p in predictions:
        if p.user_label is not None:
            latest[p.request_id] = (p.submitted_at, f"{p.request_id}#label", p.user_label)
    for f in feedback:
        assert f.request_id is not None
        if f.request_id not in latest or (f.given_at, f.feedback_id) > latest[f.request_id][:2]:
            latest[f.request_id] = (f.given_at, f.feedback_id, f.label)
    stored = dict(await pool.fetch("SELECT request_id, true_label FROM predictions"))
    assert stored == {r: latest[r][2] for r in ids}
    recount = await pool.fetchrow(
        "SELECT count(*) AS p, count(true_label) AS l, count(*) FILTER (WHERE true_label = label)"
        " AS c, count(user_label) AS u FROM predictions"
    )
    assert await window_counts(pool) == tuple(recount)


async def test_drift_checks_are_kept_once_for_the_retention_then_purged(
    store: tuple[PostgresStatsStore, asyncpg.Pool],
) -> None:
    writer, pool = store
    now = datetime.now(UTC)
    old = DriftCheck("1", "length", now - timedelta(days=8), 300, 0.4, 1e-9, True)
    recent = DriftCheck("1", "length", now - timedelta(hours=1), 300, 0.02, 0.6, False)
    await writer.write_drift("a", [old, recent])
    await writer.write_drift("a", [recent])  # the same check again (a replayed batch)
    await writer.write_drift("b", [recent])  # another replica's check of its partitions
    assert await pool.fetchval("SELECT count(*) FROM drift_checks") == 3
    assert await writer.purge_drift(7 * 24 * 3600) == 1
    assert await pool.fetchval("SELECT count(*) FROM drift_checks") == 2
