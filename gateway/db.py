"""Read-only queries on the statistics tables written by the stats processor.

Tables (stats/migrations): ``predictions`` (one row per request_id, ``true_label`` once
feedback matched it), ``feedback``, and ``window_stats`` (per model version and minute/hour).
The pool connects lazily, so the gateway starts before PostgreSQL and recovers after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import asyncpg

from gateway.errors import StatsUnavailable
from gateway.schemas import (
    ModelVersionStats,
    RecentListOut,
    RecentOut,
    SeriesPoint,
    SummaryOut,
    WindowOut,
    WindowsOut,
    WindowsQuery,
    ratio,
)
from stats.settings import DatabaseSettings

_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}

SUMMARY_SQL = """
SELECT model_name, model_version,
       count(*) AS predictions,
       count(*) FILTER (WHERE label = 1) AS positives,
       count(true_label) AS labelled,
       count(*) FILTER (WHERE true_label = label) AS correct,
       avg(latency_ms) AS mean_latency_ms,
       max(predicted_at) AS last_prediction_at
FROM predictions
GROUP BY model_name, model_version
ORDER BY max(predicted_at) DESC
"""

WINDOWS_SQL = """
SELECT window_start, model_name, model_version, predictions, positives, labelled, correct,
       latency_ms_sum
FROM window_stats
WHERE granularity = $1 AND window_start > $2 AND ($3::text IS NULL OR model_version = $3)
ORDER BY window_start, model_name, model_version
"""

SERIES_SQL = """
SELECT window_start, sum(predictions)::bigint AS predictions, sum(positives)::bigint AS positives,
       sum(labelled)::bigint AS labelled, sum(correct)::bigint AS correct
FROM window_stats
WHERE granularity = 'minute' AND window_start > $1
GROUP BY window_start
ORDER BY window_start
"""

RECENT_SQL = """
SELECT request_id, label, probability, model_name, model_version, source, predicted_at,
       latency_ms, true_label
FROM predictions
ORDER BY predicted_at DESC
LIMIT $1
"""


class PostgresStats:
    def __init__(self, settings: DatabaseSettings, *, timeout_s: float = 5.0) -> None:
        self._url = settings.url
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> PostgresStats:
        self._pool = await asyncpg.create_pool(
            self._url.get_secret_value(),
            min_size=0,
            max_size=4,
            timeout=self._timeout_s,
            command_timeout=self._timeout_s,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        if self._pool is None:
            raise StatsUnavailable("the statistics database is not open", retry_after=5)
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                yield conn
        except _DB_ERRORS as exc:
            raise StatsUnavailable(
                f"the statistics database is unreachable ({type(exc).__name__})", retry_after=5
            ) from exc

    async def check(self) -> bool:
        try:
            async with self._connection() as conn:
                await conn.fetchval("SELECT 1")
        except StatsUnavailable:
            return False
        return True

    async def summary(self) -> SummaryOut:
        async with self._connection() as conn:
            rows = await conn.fetch(SUMMARY_SQL)
            feedback = await conn.fetchval("SELECT count(*) FROM feedback")
        models = [
            ModelVersionStats(
                model_name=r["model_name"],
                model_version=r["model_version"],
                predictions=r["predictions"],
                positives=r["positives"],
                positive_share=ratio(r["positives"], r["predictions"]),
                labelled=r["labelled"],
                correct=r["correct"],
                accuracy=ratio(r["correct"], r["labelled"]),
                mean_latency_ms=r["mean_latency_ms"],
                last_prediction_at=r["last_prediction_at"],
            )
            for r in rows
        ]
        total = sum(m.predictions for m in models)
        positives = sum(m.positives for m in models)
        labelled = sum(m.labelled for m in models)
        correct = sum(m.correct for m in models)
        return SummaryOut(
            predictions=total,
            positives=positives,
            negatives=total - positives,
            positive_share=ratio(positives, total),
            labelled=labelled,
            correct=correct,
            accuracy=ratio(correct, labelled),
            feedback=feedback,
            models=models,
        )

    async def windows(self, query: WindowsQuery) -> WindowsOut:
        since = _window_floor(query.granularity) - _STEP[query.granularity] * query.limit
        async with self._connection() as conn:
            rows = await conn.fetch(WINDOWS_SQL, query.granularity, since, query.model_version)
        return WindowsOut(
            granularity=query.granularity,
            windows=[
                WindowOut(
                    window_start=r["window_start"],
                    model_name=r["model_name"],
                    model_version=r["model_version"],
                    predictions=r["predictions"],
                    positives=r["positives"],
                    labelled=r["labelled"],
                    correct=r["correct"],
                    accuracy=ratio(r["correct"], r["labelled"]),
                    mean_latency_ms=(
                        r["latency_ms_sum"] / r["predictions"] if r["predictions"] else None
                    ),
                )
                for r in rows
            ],
        )

    async def series(self, minutes: int) -> list[SeriesPoint]:
        since = _window_floor("minute") - timedelta(minutes=minutes)
        async with self._connection() as conn:
            rows = await conn.fetch(SERIES_SQL, since)
        return [SeriesPoint(**dict(r)) for r in rows]

    async def recent(self, limit: int) -> RecentListOut:
        async with self._connection() as conn:
            rows = await conn.fetch(RECENT_SQL, limit)
        return RecentListOut(
            predictions=[
                RecentOut(
                    request_id=r["request_id"],
                    label=r["label"],
                    verdict="positive" if r["label"] == 1 else "negative",
                    probability=r["probability"],
                    model_name=r["model_name"],
                    model_version=r["model_version"],
                    source=r["source"],
                    predicted_at=r["predicted_at"],
                    latency_ms=r["latency_ms"],
                    true_label=r["true_label"],
                )
                for r in rows
            ]
        )


def _window_floor(granularity: str) -> datetime:
    now = datetime.now(UTC)
    if granularity == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    return now.replace(second=0, microsecond=0)
