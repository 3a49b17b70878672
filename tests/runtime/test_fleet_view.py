"""The fleet's acknowledgement, as a pure function of the latest report per worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import WorkerState, WorkerStatus
from runtime.fleet import FleetView, acknowledged, is_live

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def report(
    worker: str,
    version: str | None,
    *,
    state: WorkerState = WorkerState.SERVING,
    ago_s: float = 1,
    model: str = "m",
    alias: str = "production",
) -> WorkerStatus:
    return WorkerStatus(
        worker_id=worker,
        model_name=model,
        alias=alias,
        state=state,
        version=version,
        heartbeat_s=5,
        started_at=NOW - timedelta(hours=1),
        reported_at=NOW - timedelta(seconds=ago_s),
    )


def view(*reports: WorkerStatus) -> FleetView:
    return FleetView({r.worker_id: r for r in reports})


def test_live_means_reported_within_three_heartbeats_and_not_stopped() -> None:
    assert is_live(report("a", "1", ago_s=15), NOW)
    assert not is_live(report("a", "1", ago_s=15.1), NOW)
    assert not is_live(report("a", "1", state=WorkerState.STOPPED), NOW)
    assert is_live(report("a", "1", state=WorkerState.FAILED), NOW)


def test_done_when_every_live_worker_serves_the_version() -> None:
    fleet = view(report("a", "2"), report("b", "2"))
    assert acknowledged(fleet, "m", "production", "2", now=NOW) == (True, [])


def test_pending_names_the_live_workers_on_another_version_or_none() -> None:
    fleet = view(
        report("b", "1", state=WorkerState.FAILED),
        report("a", "2"),
        report("c", None, state=WorkerState.STARTING),
    )
    assert acknowledged(fleet, "m", "production", "2", now=NOW) == (False, ["b", "c"])


def test_gone_stopped_and_other_models_or_aliases_do_not_hold_it_up() -> None:
    fleet = view(
        report("a", "2"),
        report("gone", "1", ago_s=60),
        report("stopped", "1", state=WorkerState.STOPPED),
        report("other", "7", model="other"),
        report("shadow", "3", alias="challenger"),
    )
    assert acknowledged(fleet, "m", "production", "2", now=NOW) == (True, [])


def test_an_empty_fleet_acknowledges_nothing() -> None:
    assert acknowledged(view(), "m", "production", "2", now=NOW) == (False, [])
    gone = view(report("a", "2", ago_s=60))
    assert acknowledged(gone, "m", "production", "2", now=NOW) == (False, [])
