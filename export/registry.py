"""Gates, promotion and rollback in the MLflow model registry.

Conventions (on top of ``inference.registry``'s ``bundle/`` artifact and ``bundle_sha256``):

- every gate is recorded on the model version as tags ``gate.<name>`` = pass | fail with
  ``gate.<name>.value``, ``.threshold`` and ``.detail``; ``gates`` = passed | failed sums them up.
- promotion moves the serving alias only to a version whose ``gates`` tag is ``passed``, and tags
  it ``promoted_by``, ``promoted_reason``, ``promoted_at`` and ``previous_production`` (the
  version the alias named before, or empty).
- rollback moves the alias back to ``previous_production`` of the version it names now, and tags
  both versions with who, why and when. ``serving_reason`` on the served version says whether
  it got there by promotion or by rollback.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from contracts import ChangeReason
from export.gates import Gate

GATES_TAG = "gates"
PASSED, FAILED = "passed", "failed"


class RegistryError(Exception):
    """A promotion or rollback that cannot be done; the message says why."""


class NotPromotable(RegistryError):
    pass


class NothingToRollBack(RegistryError):
    pass


@dataclass(frozen=True)
class AliasMove:
    model_name: str
    alias: str
    version: str
    previous: str | None
    reason: ChangeReason


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_gates(client: MlflowClient, version: ModelVersion, gates: Sequence[Gate]) -> bool:
    """Tag the version with every gate's result; True when all passed."""
    passed = all(g.passed for g in gates)
    for gate in gates:
        prefix = f"gate.{gate.name}"
        _tag(client, version, prefix, gate.status)
        _tag(client, version, f"{prefix}.value", f"{gate.value:.6g}")
        _tag(client, version, f"{prefix}.threshold", f"{gate.threshold:.6g}")
        _tag(client, version, f"{prefix}.detail", gate.detail)
    failed = [g.name for g in gates if not g.passed]
    _tag(client, version, "gates.failed", ",".join(failed))
    _tag(client, version, GATES_TAG, PASSED if passed else FAILED)
    return passed


def failed_gates(version: ModelVersion) -> list[str]:
    """The failing gates, each with its detail; ['no gate results'] for an ungated version."""
    if version.tags.get(GATES_TAG) not in {PASSED, FAILED}:
        return ["no gate results recorded on this version"]
    names = [n for n in version.tags.get("gates.failed", "").split(",") if n]
    return [f"{n}: {version.tags.get(f'gate.{n}.detail', 'failed')}" for n in names]


def current(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def promote(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    alias: str,
    by: str,
    reason: str,
) -> AliasMove:
    """Point the alias at ``version`` if every gate passed; else raise NotPromotable."""
    target = _version(client, model_name, version)
    failures = failed_gates(target)
    if failures:
        raise NotPromotable(
            f"{model_name} v{version} is not promoted, gates failed: " + "; ".join(failures)
        )
    before = current(client, model_name, alias)
    previous = str(before.version) if before is not None else None
    if previous == str(target.version):
        raise NotPromotable(f"{model_name} v{version} already holds the alias {alias!r}")
    client.set_registered_model_alias(model_name, alias, str(target.version))
    _tag(client, target, "previous_production", previous or "")
    _tag(client, target, "promoted_by", by)
    _tag(client, target, "promoted_reason", reason)
    _tag(client, target, "promoted_at", now())
    _tag(client, target, "serving_reason", ChangeReason.PROMOTED.value)
    return AliasMove(model_name, alias, str(target.version), previous, ChangeReason.PROMOTED)


def rollback(
    client: MlflowClient, model_name: str, *, alias: str, by: str, reason: str
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
    target = _version(client, model_name, previous)
    client.set_registered_model_alias(model_name, alias, str(target.version))
    stamp = now()
    _tag(client, serving, "rolled_back_by", by)
    _tag(client, serving, "rolled_back_reason", reason)
    _tag(client, serving, "rolled_back_at", stamp)
    _tag(client, target, "restored_by", by)
    _tag(client, target, "restored_reason", reason)
    _tag(client, target, "restored_at", stamp)
    _tag(client, target, "serving_reason", ChangeReason.ROLLED_BACK.value)
    return AliasMove(
        model_name, alias, str(target.version), str(serving.version), ChangeReason.ROLLED_BACK
    )


def _version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{model_name} v{version} does not exist ({exc.message})") from None


def _tag(client: MlflowClient, version: ModelVersion, key: str, value: str) -> None:
    client.set_model_version_tag(version.name, str(version.version), key, value)
