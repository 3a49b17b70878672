"""Which alerts take a fresh snapshot: the firing, recent, named ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import Alert, AlertStatus
from training.alerts import calls_for_retraining
from training.settings import RetrainSettings

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


def alert(name: str, status: AlertStatus = AlertStatus.FIRING, age_s: float = 60) -> Alert:
    received = NOW - timedelta(seconds=age_s)
    return Alert(
        name=name, status=status, starts_at=received, fingerprint="fp", received_at=received
    )


@pytest.mark.parametrize(
    ("given", "retrains"),
    [
        (alert("DataDrift"), True),
        (alert("LiveAccuracyDrop"), True),
        (alert("DataDrift", AlertStatus.RESOLVED), False),
        (alert("ServiceDown"), False),
        (alert("DataDrift", age_s=2 * 86400), False),  # a new group reading a month back
    ],
)
def test_only_recent_firing_drift_and_accuracy_alerts_retrain(given: Alert, retrains: bool) -> None:
    assert calls_for_retraining(given, RetrainSettings(), NOW) is retrains


def test_the_names_are_a_setting() -> None:
    settings = RetrainSettings(alerts=("ModelRolledBack",))
    assert calls_for_retraining(alert("ModelRolledBack"), settings, NOW)
    assert not calls_for_retraining(alert("DataDrift"), settings, NOW)
