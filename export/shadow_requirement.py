"""What promotion may require of a challenger's time in shadow (``RS_EXPORT_SHADOW_MIN_*``).

The statistics database holds what the shadow saw (``shadow_predictions``, written by the
stats processor): how many of the version's shadow predictions got a true label, and over how
long a span it answered live traffic (first to last stored shadow prediction). Read once, in a
read-only transaction; the rule itself (:func:`unmet`) is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

_SHADOW_RECORD = """
SELECT count(p.true_label) AS labelled, min(s.recorded_at) AS first_seen,
       max(s.recorded_at) AS last_seen
FROM shadow_predictions AS s LEFT JOIN predictions AS p USING (request_id)
WHERE s.model_name = $1 AND s.model_version = $2
"""


class ShadowRequirementError(Exception):
    """The requirement cannot be checked (no database configured, or it cannot be read)."""


@dataclass(frozen=True)
class ShadowRecord:
    labelled: int
    """shadow predictions of the version whose review has a true label"""
    first_seen: datetime | None
    last_seen: datetime | None

    @property
    def shadowed_s(self) -> float:
        if self.first_seen is None or self.last_seen is None:
            return 0.0
        return (self.last_seen - self.first_seen).total_seconds()


def unmet(record: ShadowRecord, *, min_labelled: int, min_s: float) -> list[str]:
    """Why the version is not ready to be promoted; empty when it is (or nothing is required)."""
    reasons = []
    if record.labelled < min_labelled:
        reasons.append(
            f"shadowed on {record.labelled} labelled reviews, RS_EXPORT_SHADOW_MIN_LABELLED "
            f"requires {min_labelled}"
        )
    if record.shadowed_s < min_s:
        reasons.append(
            f"shadowed for {record.shadowed_s:.0f}s, RS_EXPORT_SHADOW_MIN_S requires {min_s:.0f}s"
        )
    return reasons


async def shadow_record(database_url: str, model_name: str, version: str) -> ShadowRecord:
    """What the statistics database knows of ``version`` in shadow."""
    try:
        conn = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ShadowRequirementError(f"cannot reach the statistics database: {exc}") from exc
    try:
        async with conn.transaction(readonly=True):
            row = await conn.fetchrow(_SHADOW_RECORD, model_name, version)
    except asyncpg.UndefinedTableError as exc:
        raise ShadowRequirementError(
            "the statistics database has no shadow_predictions table (stats not migrated?)"
        ) from exc
    finally:
        await conn.close()
    assert row is not None  # an aggregate always returns one row
    return ShadowRecord(int(row["labelled"]), row["first_seen"], row["last_seen"])
