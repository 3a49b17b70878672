"""Whether a model version may ship, from its registry tags alone (no MLflow client): the rule
the release commands (``export``), the watcher and the workers share. The tags are described in
:mod:`inference.release`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from inference.versions import Version

GATES_TAG = "gates"
PASSED, FAILED = "passed", "failed"
OVERRIDE_BY, OVERRIDE_REASON, OVERRIDE_AT = "override.by", "override.reason", "override.at"
REFUSED, REFUSED_AT = "release.refused", "release.refused_at"
ROLLED_BACK_AT = "rolled_back_at"
PROMOTED_AT = "promoted_at"
AUTOMATIC_ROLLBACK = "rollback.automatic"


@dataclass(frozen=True)
class Override:
    by: str
    reason: str
    at: datetime


def stamp(value: str | None) -> datetime | None:
    """A tag's ISO time, or None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def failed_gates(version: Version) -> list[str]:
    """The failing gates, each with its detail; ['no gate results'] for an ungated version."""
    if version.tags.get(GATES_TAG) not in {PASSED, FAILED}:
        return ["no gate results recorded on this version"]
    names = [n for n in version.tags.get("gates.failed", "").split(",") if n]
    return [f"{n}: {version.tags.get(f'gate.{n}.detail', 'failed')}" for n in names]


def override_of(version: Version) -> Override | None:
    at = stamp(version.tags.get(OVERRIDE_AT))
    if at is None:
        return None
    return Override(
        by=version.tags.get(OVERRIDE_BY, "unknown"),
        reason=version.tags.get(OVERRIDE_REASON, ""),
        at=at,
    )


def rolled_back_at(version: Version) -> datetime | None:
    return stamp(version.tags.get(ROLLED_BACK_AT))


def release_problem(version: Version) -> str | None:
    """Why the version must not ship, or None: it passed its gates or carries an override, and
    was not rolled back since (a rolled-back version ships again only with a newer override)."""
    override = override_of(version)
    rolled_back = rolled_back_at(version)
    if rolled_back is not None and (override is None or override.at <= rolled_back):
        why = version.tags.get("rolled_back_reason", "no reason recorded")
        return (
            f"v{version.version} was rolled back at {rolled_back.isoformat()} ({why}); "
            "it ships again only with an override newer than that"
        )
    if override is not None:
        return None
    failures = failed_gates(version)
    if failures:
        return f"v{version.version} did not pass its gates: " + "; ".join(failures)
    return None
