"""The gateway's statistics adapter: owns the asyncpg pool, reads through ``gateway.readmodel``.

The SQL lives in ``gateway.readmodel`` (the tables are the stats processor's, their shape a
contract: ``contracts.statistics`` and ``stats/migrations``); this module maps its models to the
gateway's response bodies and turns database failures into StatsUnavailable.
The pool connects lazily, so the gateway starts before PostgreSQL and recovers after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import asyncpg

from contracts import Prediction, Source, Timings
from contracts.statistics import WINDOW_SECONDS, Granularity
from gateway import readmodel as queries
from gateway.errors import StatsUnavailable
from gateway.schemas import (
    DriftOut,
    DriftQuery,
    RecentListOut,
    RecentOut,
    SeriesPoint,
    ShadowOut,
    ShadowQuery,
    SummaryOut,
    WindowsOut,
    WindowsQuery,
)
from runtime.database import DatabaseSettings

_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


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
    async def _connection(self, *, snapshot: bool = False) -> AsyncIterator[Any]:
        """A pooled connection; with ``snapshot``, inside a read-only transaction that sees
        one state of the database across several queries."""
        if self._pool is None:
            raise StatsUnavailable("the statistics database is not open", retry_after=5)
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                if snapshot:
                    async with conn.transaction(isolation="repeatable_read", readonly=True):
                        yield conn
                else:
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
        async with self._connection(snapshot=True) as conn:
            overview = await queries.overview(conn)
            split = await queries.label_split(conn)
            models = await queries.totals(conn)
        return SummaryOut.of(overview, split, models)

    async def windows(self, query: WindowsQuery) -> WindowsOut:
        async with self._connection() as conn:
            points = await queries.window_series(
                conn,
                query.granularity,
                since=windows_since(query.granularity, query.limit),
                model_version=query.model_version,
                limit=None,  # bounded by ``since``: every model version's point in each window
            )
        return WindowsOut(granularity=query.granularity, windows=points)

    async def series(self, minutes: int) -> list[SeriesPoint]:
        async with self._connection() as conn:
            return await queries.traffic_series(
                conn, "minute", since=windows_since("minute", minutes), limit=minutes
            )

    async def drift(self, query: DriftQuery) -> DriftOut:
        since = datetime.now(UTC) - timedelta(minutes=query.minutes)
        async with self._connection() as conn:
            checks = await queries.drift_series(
                conn, since=since, model_version=query.model_version
            )
        return DriftOut.of(checks)

    async def shadow(self, query: ShadowQuery) -> ShadowOut:
        async with self._connection() as conn:
            comparisons = await queries.shadow_comparisons(
                conn, challenger_version=query.model_version
            )
        return ShadowOut(comparisons=comparisons)

    async def recent(self, limit: int) -> RecentListOut:
        async with self._connection() as conn:
            rows = await queries.recent_predictions(conn, limit=limit)
        return RecentListOut(predictions=[RecentOut.of(r) for r in rows])

    async def answer(self, request_id: str, within_s: float) -> Prediction | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(_ANSWER, request_id, within_s)
        if row is None:
            return None
        return Prediction(
            schema_version=2,
            request_id=row["request_id"],
            label=row["label"],
            probability=row["probability"],
            model_name=row["model_name"],
            model_version=row["model_version"],
            worker_id=row["worker_id"],
            submitted_at=row["submitted_at"],
            predicted_at=row["predicted_at"],
            source=Source(row["source"]),
            user_label=row["user_label"],
            timings=Timings(
                queue_ms=row["queue_ms"] or 0.0,
                inference_ms=row["inference_ms"] or 0.0,
                batch_size=row["batch_size"] or 1,
            ),
        )


# A retry's earlier answer, as the stats processor stored it (the gateway's one own query).
_ANSWER = """
SELECT request_id, label, probability, model_name, model_version, worker_id, submitted_at,
       predicted_at, source, user_label, queue_ms, inference_ms, batch_size
FROM predictions
WHERE request_id = $1 AND submitted_at > now() - make_interval(secs => $2)
"""


def windows_since(granularity: Granularity, count: int, *, now: datetime | None = None) -> datetime:
    """The start of the oldest of the last ``count`` windows, the current one included."""
    seconds = WINDOW_SECONDS[granularity]
    at = (now or datetime.now(UTC)).timestamp()
    current = datetime.fromtimestamp(at - at % seconds, UTC)
    return current - timedelta(seconds=seconds * (count - 1))
