"""What a model version's registry tags say about its release: the conventions shared by the
release commands (``export``) and the component that ships versions (``registry_watcher``).

- ``gates`` = passed | failed sums up the ``gate.<name>`` tags export records at registration.
- ``override.by`` / ``override.reason`` / ``override.at``: an admin shipped the version although
  it did not pass (its gates failed, or it was rolled back before). The watcher ships an
  overridden version; lineage shows who and why.
- ``release.refused`` / ``release.refused_at``: why the watcher would not ship the version the
  alias named (the fleet stayed where it was).
- ``rolled_back_*`` on the version the alias left, ``restored_*`` on the one it returned to;
  ``rollback.automatic`` = true when the watcher did it. A rolled-back version is never shipped
  again without an override newer than the rollback: rollback does not flap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from contracts import ChangeReason
from inference.registry import ABSENT

GATES_TAG = "gates"
PASSED, FAILED = "passed", "failed"
OVERRIDE_BY, OVERRIDE_REASON, OVERRIDE_AT = "override.by", "override.reason", "override.at"
REFUSED, REFUSED_AT = "release.refused", "release.refused_at"
ROLLED_BACK_AT = "rolled_back_at"
PROMOTED_AT = "promoted_at"
AUTOMATIC_ROLLBACK = "rollback.automatic"


class RegistryError(Exception):
    """A promotion or rollback that cannot be done; the message says why."""


class NothingToRollBack(RegistryError):
    pass


@dataclass(frozen=True)
class AliasMove:
    model_name: str
    alias: str
    version: str
    previous: str | None
    reason: ChangeReason


@dataclass(frozen=True)
class Override:
    by: str
    reason: str
    at: datetime


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def stamp(value: str | None) -> datetime | None:
    """A tag's ISO time, or None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def failed_gates(version: ModelVersion) -> list[str]:
    """The failing gates, each with its detail; ['no gate results'] for an ungated version."""
    if version.tags.get(GATES_TAG) not in {PASSED, FAILED}:
        return ["no gate results recorded on this version"]
    names = [n for n in version.tags.get("gates.failed", "").split(",") if n]
    return [f"{n}: {version.tags.get(f'gate.{n}.detail', 'failed')}" for n in names]


def override_of(version: ModelVersion) -> Override | None:
    at = stamp(version.tags.get(OVERRIDE_AT))
    if at is None:
        return None
    return Override(
        by=version.tags.get(OVERRIDE_BY, "unknown"),
        reason=version.tags.get(OVERRIDE_REASON, ""),
        at=at,
    )


def rolled_back_at(version: ModelVersion) -> datetime | None:
    return stamp(version.tags.get(ROLLED_BACK_AT))


def release_problem(version: ModelVersion) -> str | None:
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


def record_override(client: MlflowClient, version: ModelVersion, *, by: str, reason: str) -> None:
    tag(client, version, OVERRIDE_BY, by)
    tag(client, version, OVERRIDE_REASON, reason)
    tag(client, version, OVERRIDE_AT, now())


def current(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ABSENT:  # the model, or the alias, does not exist (yet)
            return None
        raise


def get_version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{model_name} v{version} does not exist ({exc.message})") from None


def rollback(
    client: MlflowClient,
    model_name: str,
    *,
    alias: str,
    by: str,
    reason: str,
    automatic: bool = False,
) -> AliasMove:
    """Point the alias back at the version that served before the current one."""
    serving = current(client, model_name, alias)
    if serving is None:
        raise NothingToRollBack(f"{model_name} has no {alias!r} alias to roll back")
    previous = serving.tags.get("previous_production", "")
    if not previous:
        raise NothingToRollBack(
            f"{model_name} v{serving.version} has no previous {alias} version to return to"
        )
    target = get_version(client, model_name, previous)
    client.set_registered_model_alias(model_name, alias, str(target.version))
    when = now()
    tag(client, serving, "rolled_back_by", by)
    tag(client, serving, "rolled_back_reason", reason)
    tag(client, serving, ROLLED_BACK_AT, when)
    tag(client, serving, AUTOMATIC_ROLLBACK, str(automatic).lower())
    tag(client, target, "restored_by", by)
    tag(client, target, "restored_reason", reason)
    tag(client, target, "restored_at", when)
    tag(client, target, "serving_reason", ChangeReason.ROLLED_BACK.value)
    return AliasMove(
        model_name, alias, str(target.version), str(serving.version), ChangeReason.ROLLED_BACK
    )


def tag(client: MlflowClient, version: ModelVersion, key: str, value: str) -> None:
    client.set_model_version_tag(version.name, str(version.version), key, value)
