"""The gateway's read model of the statistics tables (written by ``python -m stats``).

Every function takes an asyncpg pool or connection and returns frozen pydantic models (ready
for JSON). Shares are ``None`` where nothing was counted, never a division by zero. Totals
sum the hour windows; the minute windows hold the same counts, finer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from contracts.statistics import GRANULARITIES, Granularity, latency_quantile


class Queryable(Protocol):
    """What the queries need: an ``asyncpg.Pool`` or ``asyncpg.Connection``."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class LatencySummary(_Frozen):
    mean_ms: float | None
    max_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class VersionStats(_Frozen):
    """Everything counted for one model version."""

    model_name: str
    model_version: str
    predictions: int
    positives: int
    positive_share: float | None
    latency: LatencySummary
    labelled: int
    correct: int
    accuracy: float | None = Field(
        description="agreement with the users: correct / labelled; null with no feedback yet"
    )
    with_label: int = Field(description="predictions whose request came with the sender's label")
    with_label_share: float | None
    first_seen: datetime = Field(description="start of the first hour window with a prediction")
    last_seen: datetime = Field(description="start of the latest hour window with a prediction")


class LabelSplit(_Frozen):
    negative: int
    positive: int
    positive_share: float | None


class Accuracy(_Frozen):
    """Live accuracy: how often the model agreed with the true labels it received."""

    model_name: str
    model_version: str
    labelled: int
    correct: int
    accuracy: float | None


class WindowPoint(_Frozen):
    model_name: str
    model_version: str
    granularity: Granularity
    window_start: datetime
    predictions: int
    positives: int
    positive_share: float | None
    latency: LatencySummary
    labelled: int
    correct: int
    accuracy: float | None


class TrafficPoint(_Frozen):
    """One window of traffic, every model version summed (the live chart)."""

    window_start: datetime
    predictions: int
    positives: int
    labelled: int
    correct: int


class RecentPrediction(_Frozen):
    request_id: str
    model_name: str
    model_version: str
    label: int
    probability: float
    source: str
    latency_ms: float
    submitted_at: datetime
    predicted_at: datetime
    true_label: int | None


class Overview(_Frozen):
    """Every prediction since the first one, all model versions together."""

    predictions: int
    positive_share: float | None
    labelled: int
    correct: int
    accuracy: float | None
    with_label: int
    with_label_share: float | None
    feedback_received: int
    feedback_waiting: int
    """feedback whose prediction has not arrived (yet)"""


async def totals(db: Queryable, *, model_name: str | None = None) -> list[VersionStats]:
    """Per model version, newest first."""
    rows = await db.fetch(
        """SELECT model_name, model_version, sum(predictions) AS predictions,
                  sum(positives) AS positives, sum(latency_ms_sum) AS latency_ms_sum,
                  max(latency_ms_max) AS latency_ms_max, sum(labelled) AS labelled,
                  sum(correct) AS correct, sum(with_user_label) AS with_label,
                  min(window_start) AS first_window,
                  max(window_start) AS last_window
           FROM window_stats
           WHERE granularity = 'hour' AND ($1::text IS NULL OR model_name = $1)
           GROUP BY model_name, model_version
           ORDER BY max(window_start) DESC, model_name, model_version""",
        model_name,
    )
    buckets = await db.fetch(
        """SELECT model_name, model_version, le_ms, sum(count) AS count
           FROM window_latency
           WHERE granularity = 'hour' AND ($1::text IS NULL OR model_name = $1)
           GROUP BY model_name, model_version, le_ms""",
        model_name,
    )
    histograms: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for b in buckets:
        histograms[(b["model_name"], b["model_version"])].append((b["le_ms"], int(b["count"])))
    return [
        VersionStats(
            model_name=r["model_name"],
            model_version=r["model_version"],
            predictions=int(r["predictions"]),
            positives=int(r["positives"]),
            positive_share=_share(r["positives"], r["predictions"]),
            latency=_latency(
                r["latency_ms_sum"],
                r["latency_ms_max"],
                r["predictions"],
                histograms[(r["model_name"], r["model_version"])],
            ),
            labelled=int(r["labelled"]),
            correct=int(r["correct"]),
            accuracy=_share(r["correct"], r["labelled"]),
            with_label=int(r["with_label"]),
            with_label_share=_share(r["with_label"], r["predictions"]),
            first_seen=r["first_window"],
            last_seen=r["last_window"],
        )
        for r in rows
    ]


async def label_split(
    db: Queryable, *, model_name: str | None = None, model_version: str | None = None
) -> LabelSplit:
    """How many predictions said negative and positive."""
    rows = await db.fetch(
        """SELECT coalesce(sum(predictions), 0) AS predictions,
                  coalesce(sum(positives), 0) AS positives
           FROM window_stats
           WHERE granularity = 'hour' AND ($1::text IS NULL OR model_name = $1)
             AND ($2::text IS NULL OR model_version = $2)""",
        model_name,
        model_version,
    )
    predictions, positives = int(rows[0]["predictions"]), int(rows[0]["positives"])
    return LabelSplit(
        negative=predictions - positives,
        positive=positives,
        positive_share=_share(positives, predictions),
    )


async def live_accuracy(db: Queryable, *, model_name: str | None = None) -> list[Accuracy]:
    """Accuracy per model version over every prediction that received its true label."""
    rows = await db.fetch(
        """SELECT model_name, model_version, sum(labelled) AS labelled, sum(correct) AS correct
           FROM window_stats
           WHERE granularity = 'hour' AND ($1::text IS NULL OR model_name = $1)
           GROUP BY model_name, model_version
           ORDER BY model_name, model_version""",
        model_name,
    )
    return [
        Accuracy(
            model_name=r["model_name"],
            model_version=r["model_version"],
            labelled=int(r["labelled"]),
            correct=int(r["correct"]),
            accuracy=_share(r["correct"], r["labelled"]),
        )
        for r in rows
    ]


async def window_series(
    db: Queryable,
    granularity: Granularity = "minute",
    *,
    since: datetime | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    limit: int | None = 500,
) -> list[WindowPoint]:
    """One point per model version and window, oldest first (the latest ``limit`` points;
    ``limit=None``: every point since ``since``)."""
    _check(granularity, limit)
    filters = (granularity, since, model_name, model_version)
    where = """granularity = $1 AND ($2::timestamptz IS NULL OR window_start >= $2)
               AND ($3::text IS NULL OR model_name = $3)
               AND ($4::text IS NULL OR model_version = $4)"""
    rows = await db.fetch(
        f"""SELECT * FROM (SELECT * FROM window_stats WHERE {where}
                           ORDER BY window_start DESC, model_name, model_version LIMIT $5) AS w
            ORDER BY window_start, model_name, model_version""",
        *filters,
        limit,
    )
    if not rows:
        return []
    buckets = await db.fetch(
        f"""SELECT model_name, model_version, window_start, le_ms, count FROM window_latency
            WHERE {where} AND window_start >= $5""",
        *filters,
        rows[0]["window_start"],
    )
    histograms: dict[tuple[str, str, datetime], list[tuple[float, int]]] = defaultdict(list)
    for b in buckets:
        key = (b["model_name"], b["model_version"], b["window_start"])
        histograms[key].append((b["le_ms"], int(b["count"])))
    return [
        WindowPoint(
            model_name=r["model_name"],
            model_version=r["model_version"],
            granularity=granularity,
            window_start=r["window_start"],
            predictions=r["predictions"],
            positives=r["positives"],
            positive_share=_share(r["positives"], r["predictions"]),
            latency=_latency(
                r["latency_ms_sum"],
                r["latency_ms_max"],
                r["predictions"],
                histograms[(r["model_name"], r["model_version"], r["window_start"])],
            ),
            labelled=r["labelled"],
            correct=r["correct"],
            accuracy=_share(r["correct"], r["labelled"]),
        )
        for r in rows
    ]


async def traffic_series(
    db: Queryable,
    granularity: Granularity = "minute",
    *,
    since: datetime | None = None,
    limit: int = 60,
) -> list[TrafficPoint]:
    """One point per window with traffic, every model version summed, oldest first (the latest
    ``limit`` windows)."""
    _check(granularity, limit)
    rows = await db.fetch(
        """SELECT * FROM (
             SELECT window_start, sum(predictions)::bigint AS predictions,
                    sum(positives)::bigint AS positives, sum(labelled)::bigint AS labelled,
                    sum(correct)::bigint AS correct
             FROM window_stats
             WHERE granularity = $1 AND ($2::timestamptz IS NULL OR window_start >= $2)
             GROUP BY window_start
             ORDER BY window_start DESC
             LIMIT $3) AS w
           ORDER BY window_start""",
        granularity,
        since,
        limit,
    )
    return [TrafficPoint(**dict(r)) for r in rows]


async def recent_predictions(
    db: Queryable, *, limit: int = 50, model_name: str | None = None
) -> list[RecentPrediction]:
    """The latest predictions, newest first, with their true label once known."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    rows = await db.fetch(
        """SELECT request_id, model_name, model_version, label, probability, source, latency_ms,
                  submitted_at, predicted_at, true_label
           FROM predictions
           WHERE ($1::text IS NULL OR model_name = $1)
           ORDER BY predicted_at DESC, request_id
           LIMIT $2""",
        model_name,
        limit,
    )
    return [RecentPrediction(**dict(r)) for r in rows]


class DriftPoint(_Frozen):
    """One check of the drift monitor (``stats/drift.py``)."""

    model_version: str
    feature: str = Field(description="confidence, positive, length, unknown_share or accuracy")
    checked_at: datetime
    window_size: int = Field(description="predictions in the window (accuracy: labelled ones)")
    score: float = Field(description="PSI against the reference; for accuracy, the accuracy")
    p_value: float | None = Field(description="chi-square test against the reference")
    alarm: bool


async def drift_series(
    db: Queryable, *, since: datetime, model_version: str | None = None, limit: int = 2000
) -> list[DriftPoint]:
    """The drift checks since ``since``, oldest first (the latest ``limit``)."""
    rows = await db.fetch(
        """SELECT * FROM (
               SELECT model_version, feature, checked_at, window_size, score, p_value, alarm
               FROM drift_checks
               WHERE checked_at >= $1 AND ($2::text IS NULL OR model_version = $2)
               ORDER BY checked_at DESC, model_version, feature LIMIT $3) AS d
           ORDER BY checked_at, model_version, feature""",
        since,
        model_version,
        limit,
    )
    return [DriftPoint(**dict(r)) for r in rows]


class ShadowComparison(_Frozen):
    """A challenger version in shadow against the production version that answered the same
    reviews: agreement on every review both answered, accuracy on those that got feedback."""

    model_name: str
    challenger_version: str
    production_version: str
    compared: int = Field(description="reviews both versions answered")
    agreed: int = Field(description="of those, reviews given the same label")
    agreement: float | None = Field(description="agreed / compared")
    labelled: int = Field(description="compared reviews with a true label (latest feedback)")
    challenger_correct: int
    production_correct: int
    challenger_accuracy: float | None = Field(description="on the labelled compared reviews")
    production_accuracy: float | None = Field(description="on the same reviews")
    first_seen: datetime = Field(description="the challenger's first stored shadow prediction")
    last_seen: datetime = Field(description="its latest")


async def shadow_comparisons(
    db: Queryable, *, challenger_version: str | None = None
) -> list[ShadowComparison]:
    """Per (challenger version, production version): the side-by-side numbers, computed at
    read time by a join on request_id (both primary keys), so the latest label always counts.
    A shadow prediction whose production answer is not stored (yet) is not compared."""
    rows = await db.fetch(
        """SELECT s.model_name, s.model_version AS challenger_version,
                  p.model_version AS production_version,
                  count(*) AS compared,
                  count(*) FILTER (WHERE s.label = p.label) AS agreed,
                  count(p.true_label) AS labelled,
                  count(*) FILTER (WHERE s.label = p.true_label) AS challenger_correct,
                  count(*) FILTER (WHERE p.label = p.true_label) AS production_correct,
                  min(s.recorded_at) AS first_seen, max(s.recorded_at) AS last_seen
           FROM shadow_predictions AS s JOIN predictions AS p USING (request_id)
           WHERE $1::text IS NULL OR s.model_version = $1
           GROUP BY s.model_name, s.model_version, p.model_version
           ORDER BY s.model_name, max(s.recorded_at) DESC, p.model_version""",
        challenger_version,
    )
    return [
        ShadowComparison(
            **dict(r),
            agreement=_share(r["agreed"], r["compared"]),
            challenger_accuracy=_share(r["challenger_correct"], r["labelled"]),
            production_accuracy=_share(r["production_correct"], r["labelled"]),
        )
        for r in rows
    ]


async def overview(db: Queryable) -> Overview:
    """The headline numbers over every model version."""
    rows = await db.fetch(
        """SELECT
             (SELECT coalesce(sum(predictions), 0) FROM window_stats
               WHERE granularity = 'hour') AS predictions,
             (SELECT coalesce(sum(positives), 0) FROM window_stats
               WHERE granularity = 'hour') AS positives,
             (SELECT coalesce(sum(labelled), 0) FROM window_stats
               WHERE granularity = 'hour') AS labelled,
             (SELECT coalesce(sum(correct), 0) FROM window_stats
               WHERE granularity = 'hour') AS correct,
             (SELECT coalesce(sum(with_user_label), 0) FROM window_stats
               WHERE granularity = 'hour') AS with_label,
             (SELECT count(*) FROM feedback) AS feedback_received,
             (SELECT count(*) FROM feedback
               WHERE matched_at IS NULL AND request_id IS NOT NULL) AS feedback_waiting"""
    )
    r = rows[0]
    return Overview(
        predictions=int(r["predictions"]),
        positive_share=_share(r["positives"], r["predictions"]),
        labelled=int(r["labelled"]),
        correct=int(r["correct"]),
        accuracy=_share(r["correct"], r["labelled"]),
        with_label=int(r["with_label"]),
        with_label_share=_share(r["with_label"], r["predictions"]),
        feedback_received=int(r["feedback_received"]),
        feedback_waiting=int(r["feedback_waiting"]),
    )


def _check(granularity: str, limit: int | None) -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def _share(part: Any, whole: Any) -> float | None:
    return float(part) / float(whole) if whole else None


def _latency(
    total_ms: float, max_ms: float, count: int, buckets: Sequence[tuple[float, int]]
) -> LatencySummary:
    if not count:
        return LatencySummary(mean_ms=None, max_ms=None, p50_ms=None, p95_ms=None, p99_ms=None)
    return LatencySummary(
        mean_ms=float(total_ms) / int(count),
        max_ms=float(max_ms),
        # The histogram cannot tell more than the largest latency seen.
        p50_ms=_at_most(latency_quantile(buckets, 0.50), max_ms),
        p95_ms=_at_most(latency_quantile(buckets, 0.95), max_ms),
        p99_ms=_at_most(latency_quantile(buckets, 0.99), max_ms),
    )


def _at_most(value: float | None, ceiling: float) -> float | None:
    if value is None or math.isnan(value):
        return None
    return min(value, float(ceiling))
