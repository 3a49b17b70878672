"""The vocabulary of the statistics tables, shared by their writer (the stats processor) and
their reader (``gateway.readmodel``): window granularities and latency buckets."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Literal, get_args

Granularity = Literal["minute", "hour"]
GRANULARITIES: tuple[Granularity, ...] = get_args(Granularity)
WINDOW_SECONDS: dict[Granularity, int] = {"minute": 60, "hour": 3600}

# Upper bounds (inclusive) of the latency histogram buckets, in milliseconds; the last is +inf.
# Changing them needs a new migration that rewrites window_latency: they are stored as keys.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, math.inf,
)  # fmt: skip


def latency_bucket(latency_ms: float) -> float:
    """The upper bound of the bucket that counts ``latency_ms``."""
    return LATENCY_BUCKETS_MS[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)]


def latency_quantile(buckets: Sequence[tuple[float, int]], q: float) -> float | None:
    """Estimate the q-quantile from ``(le_ms, count)`` buckets, like Prometheus does.

    Linear interpolation inside the bucket that holds the rank; a rank that falls in the
    +inf bucket answers the highest finite bound. None when there is nothing counted.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    ordered = sorted((le, count) for le, count in buckets if count > 0)
    total = sum(count for _, count in ordered)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for le, count in ordered:
        if seen + count >= rank:
            if math.isinf(le):
                return _highest_finite_bound(ordered)
            lower = _lower_bound(le)
            return lower + (le - lower) * (rank - seen) / count
        seen += count
    return _highest_finite_bound(ordered)  # pragma: no cover - rank <= total always hits


def _lower_bound(le: float) -> float:
    index = LATENCY_BUCKETS_MS.index(le) if le in LATENCY_BUCKETS_MS else 0
    return LATENCY_BUCKETS_MS[index - 1] if index > 0 else 0.0


def _highest_finite_bound(ordered: Sequence[tuple[float, int]]) -> float:
    finite = [le for le, _ in ordered if not math.isinf(le)]
    return max(finite) if finite else LATENCY_BUCKETS_MS[-2]
