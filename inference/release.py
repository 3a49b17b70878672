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

# The rules themselves (they read tags only; the workers use them without MLflow), named here too.
from inference.release_rules import AUTOMATIC_ROLLBACK as AUTOMATIC_ROLLBACK
from inference.release_rules import FAILED as FAILED
from inference.release_rules import GATES_TAG as GATES_TAG
from inference.release_rules import OVERRIDE_AT as OVERRIDE_AT
from inference.release_rules import OVERRIDE_BY as OVERRIDE_BY
from inference.release_rules import OVERRIDE_REASON as OVERRIDE_REASON
from inference.release_rules import PASSED as PASSED
from inference.release_rules import PROMOTED_AT as PROMOTED_AT
from inference.release_rules import REFUSED as REFUSED
from inference.release_rules import REFUSED_AT as REFUSED_AT
from inference.release_rules import ROLLED_BACK_AT as ROLLED_BACK_AT
from inference.release_rules import Override as Override
from inference.release_rules import failed_gates as failed_gates
from inference.release_rules import override_of as override_of
from inference.release_rules import release_problem as release_problem
from inference.release_rules import rolled_back_at as rolled_back_at
from inference.release_rules import stamp as stamp


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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
