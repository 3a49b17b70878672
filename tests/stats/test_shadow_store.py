"""A challenger's shadow predictions in the real database: stored once, compared with production
at read time (the gateway's read model and the promotion requirement read the same tables)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from contracts import Feedback, Prediction, Source, Timings
from export.shadow_requirement import ShadowRecord, shadow_record, unmet
from gateway import readmodel as queries
from stats.aggregates import FeedbackRow, PredictionRow
from stats.db import PostgresStatsStore, create_pool
from stats.shadow import ShadowRow


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[tuple[PostgresStatsStore, asyncpg.Pool]]:
    pool = await create_pool(database_url, max_size=4)
    try:
        yield PostgresStatsStore(pool), pool
    finally:
        await pool.close()


def answer(request_id: str, label: int, version: str) -> Prediction:
    now = datetime.now(UTC)
    return Prediction(
        request_id=request_id,
        label=label,
        probability=0.9 if label else 0.1,
        model_name="m",
        model_version=version,
        worker_id=f"w-{version}",
        submitted_at=now,
        predicted_at=now,
        source=Source.REPLAY,
        timings=Timings(queue_ms=1.0, inference_ms=1.0, batch_size=1),
    )


def feedback(request_id: str, label: int, *, at: datetime) -> FeedbackRow:
    given = Feedback(request_id=request_id, label=label, source=Source.REPLAY, given_at=at)
    return FeedbackRow.from_message(given)


async def test_agreement_and_accuracy_side_by_side_on_the_same_labelled_reviews(
    store: tuple[PostgresStatsStore, asyncpg.Pool], database_url: str
) -> None:
    stats, pool = store
    # Production v1 and challenger v2 on six reviews:   r0 r1 r2 r3 r4 r5
    production = [1, 1, 0, 0, 1, 0]
    challenger = [1, 0, 0, 1, 1, 1]  # agrees on r0, r2, r4
    truth = {"r0": 1, "r1": 0, "r2": 1, "r3": 1}  # r4, r5 never labelled
    await stats.write_predictions(
        [
            PredictionRow.from_message(answer(f"r{i}", label, "1"))
            for i, label in enumerate(production)
        ]
    )
    rows = [
        ShadowRow.from_message(answer(f"r{i}", label, "2")) for i, label in enumerate(challenger)
    ]
    rows.append(ShadowRow.from_message(answer("lonely", 1, "2")))  # production never answered
    first = await stats.write_shadow_predictions(rows)
    replayed = await stats.write_shadow_predictions(rows)  # a replay or a retry adds nothing
    assert (first.inserted, replayed.inserted, replayed.duplicates) == (7, 0, 7)
    t = datetime.now(UTC)
    await stats.write_feedback([feedback(r, label, at=t) for r, label in truth.items()])
    # A later feedback corrects r3 (the latest wins): now production is right there.
    await stats.write_feedback([feedback("r3", 0, at=t + timedelta(seconds=1))])

    (c,) = await queries.shadow_comparisons(pool)
    assert (c.challenger_version, c.production_version) == ("2", "1")
    assert (c.compared, c.agreed, c.labelled) == (6, 3, 4)
    assert c.agreement == pytest.approx(0.5)
    # On r0..r3 with truth 1, 0, 1, 0: production 1,1,0,0 -> r0, r3 right; challenger 1,0,0,1
    # -> r0, r1 right.
    assert (c.production_correct, c.challenger_correct) == (2, 2)
    assert c.production_accuracy == c.challenger_accuracy == pytest.approx(0.5)
    assert c.first_seen <= c.last_seen
    assert await queries.shadow_comparisons(pool, challenger_version="9") == []

    # The promotion requirement reads the same rows (read-only).
    record = await shadow_record(database_url, "m", "2")
    assert record.labelled == 4
    assert unmet(record, min_labelled=4, min_s=0) == []
    assert "requires 5" in unmet(record, min_labelled=5, min_s=0)[0]
    nothing = await shadow_record(database_url, "m", "3")
    assert (nothing.labelled, nothing.shadowed_s) == (0, 0.0)


def test_the_shadow_period_is_first_to_last_shadow_prediction() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    record = ShadowRecord(labelled=10, first_seen=t, last_seen=t + timedelta(hours=2))
    assert unmet(record, min_labelled=10, min_s=7200) == []
    (why,) = unmet(record, min_labelled=0, min_s=7201)
    assert "RS_EXPORT_SHADOW_MIN_S" in why
