"""PostgreSQL adapter of :class:`stats.store.StatsStore`, through an asyncpg pool.

How a record is counted exactly once, whatever Kafka redelivers:

1. Every record has a unique key: ``predictions.request_id`` and ``feedback.feedback_id``.
   A batch is written by ``INSERT ... ON CONFLICT DO NOTHING RETURNING key``: the rows it
   returns are the ones stored *now*. A replayed or retried record returns nothing.
2. The aggregates (``window_stats``, ``window_latency``) change in the *same transaction*, and
   only by what step 1 returned (or by step 3's first-time labels). Either the record and its
   contribution commit together, or neither does; a redelivery finds the key and adds nothing.
3. Feedback meets its prediction by request_id whichever arrives first, and the label that wins
   is the latest ``(given_at, feedback_id)``: ``predictions.true_label`` changes only when a
   newer feedback comes (``... WHERE (given_at, feedback_id) > current RETURNING``), and the
   returned rows, with the label they had before, say what moves: NULL -> label counts one
   more labelled prediction; label -> other label moves only ``correct``, by the difference.
   A label the sender gave with the request (``Prediction.user_label``) is stored as feedback
   in the prediction's own transaction, with an id derived from the request_id.
   Feedback waiting for its prediction has ``matched_at IS NULL``; the prediction's
   transaction claims it (``UPDATE ... WHERE matched_at IS NULL RETURNING``).
4. A prediction and its feedback may be written at the same moment by two transactions (two
   agents, or two processor instances) that could not see each other's uncommitted rows and
   would both miss the pairing. So each transaction first takes a transaction-scoped advisory
   lock per request_id, in ascending key order (so no two writers deadlock on them): the
   second writer waits, then sees the first one's rows.
5. Kafka offsets are committed only after this transaction commits (``stats.service``), so a
   crash between the two replays records that step 1 turns into no-ops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from stats.aggregates import (
    Deltas,
    FeedbackRow,
    LabelGiven,
    LabelMatch,
    PredictionRow,
    first_by,
    latest_labels,
)
from stats.migrate import apply_migrations, pending_migrations
from stats.shadow import ShadowRow
from stats.store import DriftCheck, RecordRejected, StoreUnavailable, WriteResult

T = TypeVar("T")

# SQLSTATE classes that mean "try again later": connection exception, invalid catalog name (the
# database is not created yet), transaction rollback (serialization failure, deadlock),
# insufficient resources, operator intervention (shutdown, starting up), system error, invalid
# authorization (the processor's role or its password is still being made: the local stack
# and CloudNativePG's managed roles make them beside it).
_TRANSIENT_CLASSES = {"08", "3D", "40", "53", "57", "58", "28"}
# SQLSTATE classes that mean "this data can never be stored": data exception, integrity
# constraint violation.
_REJECTED_CLASSES = {"22", "23"}

# Two-key advisory locks (namespace, hash of the request_id): a keyspace of their own, apart
# from the single-key lock of stats.migrate. A hash collision only makes two writers wait.
_LOCK_NAMESPACE = 0x7273_7374  # "rsst"
_LOCK_REQUESTS = """
SELECT count(pg_advisory_xact_lock($2::int, k))
FROM (SELECT DISTINCT hashtext(r) AS k FROM unnest($1::text[]) AS r ORDER BY k) AS o
"""

_INSERT_PREDICTIONS = """
INSERT INTO predictions (request_id, model_name, model_version, label, probability, source,
                         worker_id, submitted_at, predicted_at, latency_ms, queue_ms,
                         inference_ms, batch_size, user_label)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::float8[],
                     $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                     $10::float8[], $11::float8[], $12::float8[], $13::int[], $14::smallint[])
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id
"""

# Feedback that arrived before these (new) predictions: claimed now, exactly once.
_CLAIM_WAITING_FEEDBACK = """
UPDATE feedback SET matched_at = now()
WHERE request_id = ANY($1::text[]) AND matched_at IS NULL
RETURNING request_id, label, given_at, feedback_id
"""

# The newest label wins. ``previous`` reads the rows before this statement changes them (the
# advisory locks keep other writers out), so the returned rows say what to add or move.
_LABEL_PREDICTIONS = """
WITH given AS (
    SELECT * FROM unnest($1::text[], $2::smallint[], $3::timestamptz[], $4::text[])
        AS g(request_id, label, given_at, feedback_id)
), previous AS (
    SELECT request_id, true_label FROM predictions WHERE request_id = ANY($1::text[])
)
UPDATE predictions AS p
SET true_label = given.label, true_label_given_at = given.given_at,
    true_label_feedback_id = given.feedback_id
FROM given JOIN previous USING (request_id)
WHERE p.request_id = given.request_id
  AND (p.true_label_given_at IS NULL
       OR (given.given_at, given.feedback_id) > (p.true_label_given_at, p.true_label_feedback_id))
RETURNING p.model_name, p.model_version, p.predicted_at, p.label, p.true_label,
          previous.true_label AS previous_label
"""

_INSERT_FEEDBACK = """
INSERT INTO feedback (feedback_id, request_id, text, label, source, given_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::text[],
                     $6::timestamptz[])
ON CONFLICT (feedback_id) DO NOTHING
RETURNING feedback_id
"""

# New feedback whose prediction is already stored is paired now (whether its label wins or
# not: see write_feedback).
_PAIR_NEW_FEEDBACK = """
UPDATE feedback AS f SET matched_at = now()
FROM predictions AS p
WHERE f.feedback_id = ANY($1::text[]) AND p.request_id = f.request_id
"""

# Rows arrive sorted by key (Deltas.window_rows), so concurrent writers lock them in one order.
_UPSERT_WINDOWS = """
INSERT INTO window_stats AS w (model_name, model_version, granularity, window_start,
                               predictions, positives, latency_ms_sum, latency_ms_max,
                               labelled, correct, with_user_label)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[],
                     $6::bigint[], $7::float8[], $8::float8[], $9::bigint[], $10::bigint[],
                     $11::bigint[])
ON CONFLICT (model_name, model_version, granularity, window_start) DO UPDATE SET
    predictions = w.predictions + excluded.predictions,
    positives = w.positives + excluded.positives,
    latency_ms_sum = w.latency_ms_sum + excluded.latency_ms_sum,
    latency_ms_max = greatest(w.latency_ms_max, excluded.latency_ms_max),
    labelled = w.labelled + excluded.labelled,
    correct = w.correct + excluded.correct,
    with_user_label = w.with_user_label + excluded.with_user_label
"""

_UPSERT_LATENCY = """
INSERT INTO window_latency AS h (model_name, model_version, granularity, window_start, le_ms,
                                 count)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::float8[],
                     $6::bigint[])
ON CONFLICT (model_name, model_version, granularity, window_start, le_ms) DO UPDATE SET
    count = h.count + excluded.count
"""

# A challenger's predictions: stored once per (request_id, version), no aggregate to keep.
_INSERT_SHADOW = """
INSERT INTO shadow_predictions (request_id, model_name, model_version, label, probability,
                                worker_id, predicted_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::float8[],
                     $6::text[], $7::timestamptz[])
ON CONFLICT (request_id, model_version) DO NOTHING
RETURNING request_id
"""

_PURGE_UNMATCHED = """
DELETE FROM feedback
WHERE matched_at IS NULL AND request_id IS NOT NULL
  AND recorded_at < now() - make_interval(secs => $1)
"""


_INSERT_DRIFT = """
INSERT INTO drift_checks (monitor, model_version, feature, checked_at, window_size, score,
                          p_value, alarm)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::float8[],
                         $7::float8[], $8::bool[])
ON CONFLICT DO NOTHING
"""

_PURGE_DRIFT = """
DELETE FROM drift_checks WHERE checked_at < now() - make_interval(secs => $1)
"""

_RECENT_LABELLED = """
SELECT coalesce(sum((label = true_label)::int), 0) AS correct, count(*) AS labelled
FROM (SELECT label, true_label FROM predictions
      WHERE model_version = $1 AND true_label IS NOT NULL
      ORDER BY true_label_given_at DESC LIMIT $2) AS recent
"""


class PostgresStatsStore:
    """Writes batches of records, each batch in one transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write_predictions(self, batch: Sequence[PredictionRow]) -> WriteResult:
        rows = first_by(batch, lambda row: row.request_id)  # a key twice in one batch: the first

        async def work(conn: asyncpg.Connection) -> WriteResult:
            await conn.fetchval(_LOCK_REQUESTS, [row.request_id for row in rows], _LOCK_NAMESPACE)
            returned = await conn.fetch(_INSERT_PREDICTIONS, *_prediction_columns(rows))
            inserted_ids = {record["request_id"] for record in returned}
            inserted = [row for row in rows if row.request_id in inserted_ids]
            deltas = Deltas()
            for row in inserted:
                deltas.add_prediction(row)
            labelled = 0
            if inserted:
                # A label given with the request is feedback, claimed just below like any other.
                given_with = [
                    FeedbackRow.given_with(row) for row in inserted if row.user_label is not None
                ]
                if given_with:
                    await conn.fetch(_INSERT_FEEDBACK, *_feedback_columns(given_with))
                waiting = await conn.fetch(_CLAIM_WAITING_FEEDBACK, sorted(inserted_ids))
                labelled = await self._label(conn, [LabelGiven(**dict(r)) for r in waiting], deltas)
            await _upsert_deltas(conn, deltas)
            return WriteResult(len(inserted), len(batch) - len(inserted), labelled)

        return await self._transaction(work)

    async def write_feedback(self, batch: Sequence[FeedbackRow]) -> WriteResult:
        rows = first_by(batch, lambda row: row.feedback_id)

        async def work(conn: asyncpg.Connection) -> WriteResult:
            request_ids = [row.request_id for row in rows if row.request_id is not None]
            await conn.fetchval(_LOCK_REQUESTS, request_ids, _LOCK_NAMESPACE)
            returned = await conn.fetch(_INSERT_FEEDBACK, *_feedback_columns(rows))
            inserted_ids = {record["feedback_id"] for record in returned}
            inserted = [row for row in rows if row.feedback_id in inserted_ids]
            answering = [row for row in inserted if row.request_id is not None]
            deltas = Deltas()
            labelled = 0
            if answering:
                labelled = await self._label(
                    conn,
                    [
                        LabelGiven(row.request_id, row.label, row.given_at, row.feedback_id)
                        for row in answering
                        if row.request_id is not None
                    ],
                    deltas,
                )
                await conn.execute(_PAIR_NEW_FEEDBACK, [row.feedback_id for row in answering])
            await _upsert_deltas(conn, deltas)
            return WriteResult(len(inserted), len(batch) - len(inserted), labelled)

        return await self._transaction(work)

    async def write_shadow_predictions(self, batch: Sequence[ShadowRow]) -> WriteResult:
        rows = first_by(batch, lambda row: (row.request_id, row.model_version))

        async def work(conn: asyncpg.Connection) -> WriteResult:
            returned = await conn.fetch(
                _INSERT_SHADOW,
                [row.request_id for row in rows],
                [row.model_name for row in rows],
                [row.model_version for row in rows],
                [row.label for row in rows],
                [row.probability for row in rows],
                [row.worker_id for row in rows],
                [row.predicted_at for row in rows],
            )
            return WriteResult(len(returned), len(batch) - len(returned), 0)

        return await self._transaction(work)

    async def purge_unmatched(self, older_than_s: float) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            status: str = await conn.execute(_PURGE_UNMATCHED, older_than_s)
            return int(status.rsplit(" ", 1)[-1])

        return await self._transaction(work)

    async def write_drift(self, monitor: str, checks: Sequence[DriftCheck]) -> None:
        """The drift monitor's checks (derived data: a check written twice is kept once)."""
        if not checks:
            return

        async def work(conn: asyncpg.Connection) -> None:
            columns = zip(*((c.model_version, c.feature, c.checked_at, c.window_size, c.score,
                             c.p_value, c.alarm) for c in checks), strict=True)  # fmt: skip
            await conn.execute(_INSERT_DRIFT, monitor, *map(list, columns))

        await self._call(work)

    async def purge_drift(self, older_than_s: float) -> int:
        """Forget drift checks older than the retention (they are many: one per feature and
        step of every version's window)."""

        async def work(conn: asyncpg.Connection) -> int:
            status: str = await conn.execute(_PURGE_DRIFT, older_than_s)
            return int(status.rsplit(" ", 1)[-1])

        return await self._call(work)

    async def recent_labelled(self, version: str, window: int) -> tuple[int, int]:
        """(correct, labelled) over the version's last ``window`` labelled predictions."""

        async def work(conn: asyncpg.Connection) -> tuple[int, int]:
            row = await conn.fetchrow(_RECENT_LABELLED, version, window)
            return int(row["correct"]), int(row["labelled"])

        return await self._call(work)

    async def ping(self) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            await conn.fetchval("SELECT 1")

        await self._call(work)

    async def migrate(self) -> list[str]:
        """Apply the migrations not applied yet (advisory-locked, so safe from every replica)."""
        return await self._call(apply_migrations)

    async def pending_migrations(self) -> list[str]:
        """The migrations not applied yet, read without any DDL (any role may ask)."""
        return await self._call(pending_migrations)

    @staticmethod
    async def _label(conn: asyncpg.Connection, given: Sequence[LabelGiven], deltas: Deltas) -> int:
        """Give predictions the newest label offered; count what was set or corrected."""
        latest = latest_labels(given)
        if not latest:
            return 0
        changed = await conn.fetch(
            _LABEL_PREDICTIONS,
            [g.request_id for g in latest],
            [g.label for g in latest],
            [g.given_at for g in latest],
            [g.feedback_id for g in latest],
        )
        for record in changed:
            deltas.add_label(LabelMatch(**dict(record)))
        return len(changed)

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def in_transaction(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await work(conn)

        return await self._call(in_transaction)

    async def _call(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection, turning asyncpg's errors into the store's."""
        try:
            async with self._pool.acquire() as conn:
                return await work(conn)
        except asyncpg.PostgresError as exc:
            sqlstate = str(getattr(exc, "sqlstate", "") or "")
            if sqlstate[:2] in _TRANSIENT_CLASSES:
                raise StoreUnavailable(f"{type(exc).__name__} ({sqlstate}): {exc}") from exc
            if sqlstate[:2] in _REJECTED_CLASSES:
                raise RecordRejected(
                    f"database refused the record: {type(exc).__name__} ({sqlstate}): {exc}"
                ) from exc
            raise
        except (asyncpg.exceptions.DataError, UnicodeError) as exc:
            # Refused while encoding the parameters, before the server saw them.
            raise RecordRejected(f"database refused the record: {exc}") from exc
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
            # Refused/reset connections, timeouts, "connection is closed".
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _prediction_columns(rows: Sequence[PredictionRow]) -> list[list[Any]]:
    return [
        [row.request_id for row in rows],
        [row.model_name for row in rows],
        [row.model_version for row in rows],
        [row.label for row in rows],
        [row.probability for row in rows],
        [row.source for row in rows],
        [row.worker_id for row in rows],
        [row.submitted_at for row in rows],
        [row.predicted_at for row in rows],
        [row.latency_ms for row in rows],
        [row.queue_ms for row in rows],
        [row.inference_ms for row in rows],
        [row.batch_size for row in rows],
        [row.user_label for row in rows],
    ]


def _feedback_columns(rows: Sequence[FeedbackRow]) -> list[list[Any]]:
    return [
        [row.feedback_id for row in rows],
        [row.request_id for row in rows],
        [row.text for row in rows],
        [row.label for row in rows],
        [row.source for row in rows],
        [row.given_at for row in rows],
    ]


async def _upsert_deltas(conn: asyncpg.Connection, deltas: Deltas) -> None:
    windows = deltas.window_rows()
    if windows:
        await conn.execute(
            _UPSERT_WINDOWS,
            [key[0] for key, _ in windows],
            [key[1] for key, _ in windows],
            [key[2] for key, _ in windows],
            [key[3] for key, _ in windows],
            [d.predictions for _, d in windows],
            [d.positives for _, d in windows],
            [d.latency_ms_sum for _, d in windows],
            [d.latency_ms_max for _, d in windows],
            [d.labelled for _, d in windows],
            [d.correct for _, d in windows],
            [d.with_user_label for _, d in windows],
        )
    latency = deltas.latency_rows()
    if latency:
        await conn.execute(
            _UPSERT_LATENCY,
            [key[0] for key, _, _ in latency],
            [key[1] for key, _, _ in latency],
            [key[2] for key, _, _ in latency],
            [key[3] for key, _, _ in latency],
            [le for _, le, _ in latency],
            [count for _, _, count in latency],
        )


async def create_pool(url: str, *, max_size: int) -> asyncpg.Pool:
    """A pool that connects lazily: creating it succeeds while the database is away."""
    return await asyncpg.create_pool(url, min_size=0, max_size=max_size, command_timeout=30)
