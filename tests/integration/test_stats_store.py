"""The PostgreSQL store on its own: concurrent writers, and the retention of unmatched feedback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from contracts import Feedback, Prediction, Source, Timings
from stats.aggregates import FeedbackRow, PredictionRow
from stats.db import PostgresStatsStore, create_pool


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
