"""GET /v1/admin/fleet over the in-memory ports: every worker's report, and per model whether
the live workers acknowledged the version the models topic names (the real topics are in
tests/workers/test_fleet.py)."""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from contracts import ModelChanged, WorkerState, WorkerStatus
from contracts.messages import utc_now
from gateway.auth import KeyRecord, Role, hash_key, new_key
from runtime.fleet import FleetView
from tests.gateway.memory import MemoryFleet, memory_app


def report(worker: str, version: str | None, state: WorkerState, **fields: object) -> WorkerStatus:
    return WorkerStatus.model_validate(
        {
            "worker_id": worker,
            "model_name": "m",
            "alias": "production",
            "state": state,
            "version": version,
            "heartbeat_s": 5,
            "started_at": utc_now() - timedelta(minutes=5),
            **fields,
        }
    )


def announced(version: str) -> ModelChanged:
    return ModelChanged(
        model_name="m",
        version=version,
        alias="production",
        artifact_uri=f"models:/m/{version}",
        sha256="0" * 64,
    )


def test_the_fleet_lists_every_worker_and_whether_the_live_ones_acknowledged() -> None:
    app, _, _ = memory_app(open_mode=True)
    fleet = app.state.runtime.fleet
    assert isinstance(fleet, MemoryFleet)
    fleet.announced = {"m": announced("2")}
    fleet.view = FleetView(
        {
            "w1": report("w1", "2", WorkerState.SERVING, wanted_version="2", lag=0),
            "w2": report(
                "w2", "1", WorkerState.FAILED, wanted_version="2", load_attempts=3,
                error="download: ConnectionError (retrying with backoff)",
            ),
            "gone": report(
                "gone", "1", WorkerState.SERVING, reported_at=utc_now() - timedelta(minutes=1)
            ),
        }
    )  # fmt: skip
    with TestClient(app) as client:
        body = client.get("/v1/admin/fleet").json()
        assert [w["worker_id"] for w in body["workers"]] == ["gone", "w1", "w2"]
        w2 = body["workers"][2]
        assert w2["state"] == "failed"
        assert w2["load_attempts"] == 3
        assert w2["live"] is True
        assert "ConnectionError" in w2["error"]
        assert body["workers"][0]["live"] is False
        assert body["workers"][0]["seconds_since_report"] >= 60
        assert body["models"] == [
            {
                "model_name": "m",
                "alias": "production",
                "version": "2",
                "acknowledged": False,
                "pending": ["w2"],
                "live_workers": 2,
            }
        ]
        fleet.view = FleetView({"w1": fleet.view.workers["w1"]})
        assert client.get("/v1/admin/fleet").json()["models"][0]["acknowledged"] is True


def test_the_fleet_is_for_admins_only() -> None:
    viewer, admin = new_key(), new_key()
    keys = [
        KeyRecord(name="v", role=Role.VIEWER, sha256=hash_key(viewer)),
        KeyRecord(name="a", role=Role.ADMIN, sha256=hash_key(admin)),
    ]
    app, _, _ = memory_app(api_keys=keys)
    with TestClient(app) as client:
        assert client.get("/v1/admin/fleet").status_code == 401
        assert client.get("/v1/admin/fleet", headers={"X-API-Key": viewer}).status_code == 403
        answer = client.get("/v1/admin/fleet", headers={"X-API-Key": admin})
        assert answer.status_code == 200
        assert answer.json() == {"workers": [], "models": []}
