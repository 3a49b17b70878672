"""A challenger in shadow, in the MLflow model registry (``python -m export shadow``).

- shadow points the challenger alias at a version whose gates passed (the rule of promotion,
  ``export.registry.failed_gates``) and tags it ``shadow_by``, ``shadow_reason``, ``shadow_at``;
  shadow workers then run it on live traffic, answering no one.
- stopping the shadow removes the alias and tags the version ``shadow_stopped_by``,
  ``shadow_stopped_reason``, ``shadow_stopped_at``; the registry watcher then withdraws it.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contracts import ChangeReason
from export.registry import AliasMove, NotPromotable, RegistryError, current
from inference.release import failed_gates, now


class NoChallenger(RegistryError):
    pass


def shadow(
    client: MlflowClient, model_name: str, version: str, *, alias: str, by: str, reason: str
) -> AliasMove:
    """Point the challenger ``alias`` at ``version`` if every gate passed."""
    try:
        target = client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{model_name} v{version} does not exist ({exc.message})") from None
    failures = failed_gates(target)
    if failures:
        raise NotPromotable(
            f"{model_name} v{version} is not shadowed, gates failed: " + "; ".join(failures)
        )
    before = current(client, model_name, alias)
    previous = str(before.version) if before is not None else None
    if previous == str(target.version):
        raise NotPromotable(f"{model_name} v{version} already holds the alias {alias!r}")
    client.set_registered_model_alias(model_name, alias, str(target.version))
    _tags(client, model_name, str(target.version), "shadow", by, reason)
    return AliasMove(model_name, alias, str(target.version), previous, ChangeReason.ALIAS_MOVED)


def stop_shadow(client: MlflowClient, model_name: str, *, alias: str, by: str, reason: str) -> str:
    """Remove the challenger ``alias`` (its shadow workers stop); the version it named."""
    challenger = current(client, model_name, alias)
    if challenger is None:
        raise NoChallenger(f"{model_name} has no {alias!r} alias: nothing is in shadow")
    client.delete_registered_model_alias(model_name, alias)
    _tags(client, model_name, str(challenger.version), "shadow_stopped", by, reason)
    return str(challenger.version)


def _tags(client: MlflowClient, name: str, version: str, prefix: str, by: str, why: str) -> None:
    for key, value in (("by", by), ("reason", why), ("at", now())):
        client.set_model_version_tag(name, version, f"{prefix}_{key}", value)
