"""When a shipped version goes back: an alert on it during its probation window.

A version's probation starts when the watcher ships it (``shipped_at``) and lasts
``probation_s``. A firing alert whose name is in ``rollback_on``, about that version (its
``model_version`` label, or no version label at all and fired after the version shipped),
rolls the alias back to the version the fleet served before. A version that got where it is by
a rollback is not on probation, so rollbacks never chain, and the one rolled back ships again
only with an override: no flapping.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from mlflow.entities.model_registry import ModelVersion

from contracts import Alert, AlertStatus, ChangeReason
from inference.release import stamp


def on_probation(version: ModelVersion, *, probation_s: float, now: datetime) -> bool:
    tags = version.tags
    shipped = stamp(tags.get("shipped_at"))
    if shipped is None or tags.get("serving_reason") == ChangeReason.ROLLED_BACK.value:
        return False
    return now - shipped <= timedelta(seconds=probation_s)


def rollback_reason(
    alert: Alert,
    serving: ModelVersion,
    *,
    rollback_on: Collection[str],
    probation_s: float,
    now: datetime,
) -> str | None:
    """Why ``alert`` rolls ``serving`` back, or None when it does not."""
    if alert.status != AlertStatus.FIRING or alert.name not in rollback_on:
        return None
    if not on_probation(serving, probation_s=probation_s, now=now):
        return None
    labels = alert.labels
    if labels.get("model_name", serving.name) != serving.name:
        return None
    version = labels.get("model_version")
    if version is None:
        shipped = stamp(serving.tags.get("shipped_at"))
        if shipped is None or alert.starts_at < shipped:
            return None
    elif version != str(serving.version):
        return None
    if not serving.tags.get("previous_production"):
        return None
    summary = f": {alert.summary}" if alert.summary else ""
    return f"alert {alert.name} during probation{summary}"
