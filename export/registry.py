"""Gates, promotion and rollback in the MLflow model registry.

Conventions (on top of ``inference.registry``'s ``bundle/`` artifact and ``bundle_sha256``):

- every gate is recorded on the model version as tags ``gate.<name>`` = pass | fail with
  ``gate.<name>.value``, ``.threshold`` and ``.detail``; ``gates`` = passed | failed sums them up.
- promotion moves the serving alias only to a version whose ``gates`` tag is ``passed`` and that
  was never rolled back, and tags it ``promoted_by``, ``promoted_reason``, ``promoted_at`` and
  ``previous_production`` (the version the alias named before, or empty). ``--override`` ships
  any version, recorded as ``override.by/reason/at`` (``inference.release``).
- rollback (``inference.release``, shared with the watcher's automatic rollback) moves the
  alias back to ``previous_production`` of the version it names now, and tags both versions
  with who, why and when. ``serving_reason`` on the served version says whether it got there
  by promotion or by rollback.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from contracts import ChangeReason
from export.gates import Gate
from inference.release import (
    FAILED,
    GATES_TAG,
    PASSED,
    AliasMove,
    NothingToRollBack,
    RegistryError,
    current,
    failed_gates,
    get_version,
    now,
    record_override,
    rollback,
    rolled_back_at,
    tag,
)

__all__ = [
    "GATES_TAG",
    "AliasMove",
    "NotPromotable",
    "NothingToRollBack",
    "RegistryError",
    "current",
    "promote",
    "record_gate",
    "record_gates",
    "rollback",
    "who",
]


class NotPromotable(RegistryError):
    pass


def who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def record_gates(client: MlflowClient, version: ModelVersion, gates: Sequence[Gate]) -> bool:
    """Tag the version with every gate's result; True when all passed."""
    for gate in gates:
        _record(client, version, gate)
    return _sum_up(client, version, {g.name: g.passed for g in gates})


def record_gate(client: MlflowClient, version: ModelVersion, gate: Gate) -> bool:
    """Add (or redo) one gate on a registered version, e.g. the live replay at promotion, and
    sum up again with the gates recorded before; True when all passed."""
    _record(client, version, gate)
    earlier = {
        key.removeprefix("gate."): value == "pass"
        for key, value in version.tags.items()
        if key.startswith("gate.") and key.count(".") == 1
    }
    return _sum_up(client, version, earlier | {gate.name: gate.passed})


def _record(client: MlflowClient, version: ModelVersion, gate: Gate) -> None:
    prefix = f"gate.{gate.name}"
    tag(client, version, prefix, gate.status)
    tag(client, version, f"{prefix}.value", f"{gate.value:.6g}")
    tag(client, version, f"{prefix}.threshold", f"{gate.threshold:.6g}")
    tag(client, version, f"{prefix}.detail", gate.detail)


def _sum_up(client: MlflowClient, version: ModelVersion, passed: dict[str, bool]) -> bool:
    failed = [name for name, ok in passed.items() if not ok]
    tag(client, version, "gates.failed", ",".join(failed))
    tag(client, version, GATES_TAG, FAILED if failed else PASSED)
    return not failed


def promote(
    client: MlflowClient,
    model_name: str,
    version: str,
    *,
    alias: str,
    by: str,
    reason: str,
    override: bool = False,
) -> AliasMove:
    """Point the alias at ``version`` if every gate passed (and it was never rolled back);
    else raise NotPromotable. ``override`` ships it anyway, recorded on the version as who and
    why: the watcher ships an overridden version, and lineage shows the override."""
    target = get_version(client, model_name, version)
    problems = []
    if gates := failed_gates(target):
        problems.append("gates failed: " + "; ".join(gates))
    if rolled_back_at(target) is not None:
        problems.append(
            f"rolled back at {target.tags.get('rolled_back_at')} "
            f"({target.tags.get('rolled_back_reason', 'no reason recorded')})"
        )
    if problems and not override:
        raise NotPromotable(
            f"{model_name} v{version} is not promoted, "
            + "; ".join(problems)
            + " (--override ships it anyway, with a reason)"
        )
    before = current(client, model_name, alias)
    previous = str(before.version) if before is not None else None
    if previous == str(target.version) and not override:
        raise NotPromotable(f"{model_name} v{version} already holds the alias {alias!r}")
    if override:  # before the move, so that the watcher never sees the move without it
        record_override(client, target, by=by, reason=reason)
    if previous != str(target.version):
        tag(client, target, "previous_production", previous or "")
        tag(client, target, "promoted_by", by)
        tag(client, target, "promoted_reason", reason)
        tag(client, target, "promoted_at", now())
        tag(client, target, "serving_reason", ChangeReason.PROMOTED.value)
        client.set_registered_model_alias(model_name, alias, str(target.version))
    return AliasMove(model_name, alias, str(target.version), previous, ChangeReason.PROMOTED)
