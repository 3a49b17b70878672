"""The pure rules of release: which version may ship, and which alert rolls back which version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from contracts import Alert, AlertStatus, ModelChanged, WorkerState, WorkerStatus
from inference.release import release_problem as tag_problem
from registry_watcher.acknowledgement import overdue
from registry_watcher.probation import on_probation, rollback_reason
from registry_watcher.release import key
from runtime.fleet import FleetView

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PASSED = {"gates": "passed", "gates.failed": ""}
FAILED = {
    "gates": "failed",
    "gates.failed": "accuracy_floor",
    "gate.accuracy_floor.detail": "test accuracy 0.90 is below the floor 0.95 by 0.05",
}


def version(number: str = "3", **tags: str) -> ModelVersion:
    return ModelVersion(
        "m",
        number,
        0,
        tags=[ModelVersionTag(k.replace("__", "."), v) for k, v in tags.items()],  # type: ignore[no-untyped-call]
    )


def ago(minutes: float) -> str:
    return (NOW - timedelta(minutes=minutes)).isoformat()


def test_a_version_that_passed_its_gates_ships() -> None:
    assert tag_problem(version(**PASSED)) is None


def test_failed_or_missing_gates_are_refused_with_the_failing_gate() -> None:
    problem = tag_problem(version(**FAILED))
    assert problem is not None
    assert "accuracy_floor: test accuracy 0.90" in problem
    assert "no gate results" in (tag_problem(version()) or "")


def test_an_override_ships_a_failed_version() -> None:
    assert tag_problem(version(**FAILED, override__at=ago(1), override__by="ana")) is None


def test_a_rolled_back_version_needs_an_override_newer_than_the_rollback() -> None:
    rolled = {**PASSED, "rolled_back_at": ago(10), "rolled_back_reason": "alert X"}
    problem = tag_problem(version(**rolled))
    assert problem is not None
    assert "rolled back" in problem
    assert "alert X" in problem
    assert tag_problem(version(**rolled, override__at=ago(20))) is not None  # older override
    assert tag_problem(version(**rolled, override__at=ago(5))) is None


def test_the_verdict_is_decided_again_when_an_override_arrives() -> None:
    assert key(version(**FAILED)) != key(version(**FAILED, override__at=ago(1)))


def alert(name: str = "LiveAccuracyDrop", **labels: str) -> Alert:
    return Alert(
        name=name,
        status=AlertStatus.FIRING,
        labels=labels,
        summary="live accuracy dropped",
        starts_at=NOW - timedelta(minutes=1),
        fingerprint="f",
    )


ON_PROBATION = {"shipped_at": ago(10), "previous_production": "2", **PASSED}


def rollback(alert: Alert, serving: ModelVersion) -> str | None:
    return rollback_reason(
        alert, serving, rollback_on={"LiveAccuracyDrop"}, probation_s=3600.0, now=NOW
    )


def test_an_alert_on_the_version_on_probation_rolls_it_back() -> None:
    reason = rollback(alert(model_version="3"), version(**ON_PROBATION))
    assert reason == "alert LiveAccuracyDrop during probation: live accuracy dropped"


def test_alerts_that_do_not_roll_back() -> None:
    serving = version(**ON_PROBATION)
    assert rollback(alert(model_version="2"), serving) is None  # another one
    assert rollback(alert("DataDrift", model_version="3"), serving) is None
    resolved = alert(model_version="3").model_copy(update={"status": AlertStatus.RESOLVED})
    assert rollback(resolved, serving) is None
    other_model = alert(model_version="3", model_name="other")
    assert rollback(other_model, serving) is None
    # Probation is over; nothing to return to; the version got there by a rollback.
    late = version(**{**ON_PROBATION, "shipped_at": ago(61)})
    assert rollback(alert(model_version="3"), late) is None
    nowhere = version(**{**ON_PROBATION, "previous_production": ""})
    assert rollback(alert(model_version="3"), nowhere) is None
    restored = version(**ON_PROBATION, serving_reason="rolled_back")
    assert not on_probation(restored, probation_s=3600, now=NOW)


def test_an_alert_without_a_version_counts_only_if_it_fired_after_the_version_shipped() -> None:
    assert rollback(alert(), version(**ON_PROBATION)) is not None
    shipped_just_now = version(**{**ON_PROBATION, "shipped_at": ago(0.5)})
    assert rollback(alert(), shipped_just_now) is None


def test_a_fleet_is_overdue_only_with_live_workers_off_the_version_after_the_deadline() -> None:
    event = ModelChanged(
        model_name="m", version="3", alias="production", artifact_uri="x", sha256="a" * 64
    )

    def worker(worker_id: str, version: str, **more: Any) -> WorkerStatus:
        fields: dict[str, Any] = {"state": WorkerState.SERVING, "heartbeat_s": 5.0}
        return WorkerStatus(
            worker_id=worker_id, model_name="m", alias="production", version=version,
            started_at=datetime.now(UTC), **(fields | more),
        )  # fmt: skip

    behind = FleetView({"a": worker("a", "3"), "b": worker("b", "2")})
    late = overdue(behind, event, waited_s=61, deadline_s=60)
    assert late is not None
    assert late.pending == ["b"]
    assert late.alert().labels == {"model_name": "m", "model_version": "3", "alias": "production"}
    assert overdue(behind, event, waited_s=59, deadline_s=60) is None  # not yet
    along = FleetView({"a": worker("a", "3")})
    assert overdue(along, event, waited_s=61, deadline_s=60) is None
    gone = FleetView({"b": worker("b", "2", reported_at=datetime.now(UTC) - timedelta(hours=1))})
    assert overdue(gone, event, waited_s=61, deadline_s=60) is None  # nobody live: not ours
