"""Authentication and authorization: every route x every kind of caller, and the WebSocket.

The expected role of each route is written out here, independently of the app's own
metadata, and the table must cover every documented route: a new route without a decision
about who may call it fails this test.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient, WebSocketDenialResponse, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.auth import KeyRecord, Role, hash_key, new_key
from gateway.keys import app as keys_cli
from gateway.settings import Settings
from tests.gateway.memory import (
    MemoryAlerts,
    MemoryBus,
    MemoryFleet,
    MemoryModels,
    MemoryStats,
    memory_app,
    receive_type,
)

PUBLIC = None
# (method, path as requested, JSON body) -> the least role that may call it.
ROUTES: dict[tuple[str, str], Role | None] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/static/{path}"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    # Without a key on the operations port only (tests/gateway/test_operations_port.py).
    ("GET", "/readyz"): Role.ADMIN,
    ("GET", "/metrics"): Role.ADMIN,
    ("GET", "/openapi.json"): Role.VIEWER,
    ("POST", "/v1/classify"): Role.CLIENT,
    ("POST", "/v1/classify/batch"): Role.CLIENT,
    ("POST", "/v1/explain"): Role.CLIENT,
    ("POST", "/v1/feedback"): Role.CLIENT,
    ("GET", "/v1/stats/summary"): Role.VIEWER,
    ("GET", "/v1/stats/windows"): Role.VIEWER,
    ("GET", "/v1/stats/recent"): Role.VIEWER,
    ("GET", "/v1/stats/drift"): Role.VIEWER,
    ("GET", "/v1/stats/shadow"): Role.VIEWER,
    ("GET", "/v1/session"): Role.VIEWER,
    ("GET", "/v1/model"): Role.VIEWER,
    ("GET", "/v1/alerts"): Role.VIEWER,
    ("GET", "/v1/admin/status"): Role.ADMIN,
    ("POST", "/v1/admin/alerts"): Role.ADMIN,
    ("GET", "/v1/admin/fleet"): Role.ADMIN,
    ("GET", "/v1/ws"): Role.VIEWER,  # the WebSocket handshake, tested below
}
REQUEST: dict[str, tuple[str, dict[str, Any] | None]] = {
    "/static/{path}": ("/static/app.js", None),
    "/v1/classify": ("/v1/classify", {"text": "Nice."}),
    "/v1/classify/batch": ("/v1/classify/batch", {"reviews": [{"text": "Nice."}]}),
    "/v1/explain": ("/v1/explain", {"text": "Nice."}),
    "/v1/feedback": ("/v1/feedback", {"request_id": "r1", "label": 1}),
    "/v1/admin/alerts": ("/v1/admin/alerts", {
        "version": "4", "status": "firing", "alerts": [{
            "status": "firing", "labels": {"alertname": "ServiceDown"},
            "startsAt": "2026-12-02T10:00:00Z", "fingerprint": "f1"}]}),
}  # fmt: skip
# What an authorized call answers over the memory bus, which never replies: classify waits
# out the (short) reply timeout.
AUTHORIZED_STATUS = {
    "/v1/classify": 504,
    "/v1/classify/batch": 504,
    "/v1/explain": 504,
    "/v1/feedback": 202,
    "/v1/admin/alerts": 202,
}

KEYS = {role: new_key() for role in Role}
CALLERS: dict[str, dict[str, str]] = {
    "no key": {},
    "unknown key": {"Authorization": f"Bearer {new_key()}"},
    "other scheme": {"Authorization": f"Basic {KEYS[Role.ADMIN]}"},
    "viewer": {"Authorization": f"Bearer {KEYS[Role.VIEWER]}"},
    "client": {"X-API-Key": KEYS[Role.CLIENT]},
    "admin": {"Authorization": f"bearer {KEYS[Role.ADMIN]}"},
}
CALLER_ROLE = {"viewer": Role.VIEWER, "client": Role.CLIENT, "admin": Role.ADMIN}


def records() -> list[KeyRecord]:
    return [KeyRecord(name=r.label, role=r, sha256=hash_key(k)) for r, k in KEYS.items()]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app, _, _ = memory_app(api_keys=records(), reply_timeout_s=0.05)
    with TestClient(app) as test_client:
        yield test_client


def test_the_table_covers_every_documented_route(client: TestClient) -> None:
    paths = client.get("/openapi.json", headers=CALLERS["viewer"]).json()["paths"]
    documented = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert documented == set(ROUTES)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[1] != "/v1/ws"])
def test_route_by_caller(client: TestClient, method: str, path: str, caller: str) -> None:
    url, body = REQUEST.get(path, (path, None))
    response = client.request(method, url, json=body, headers=CALLERS[caller])
    needed = ROUTES[(method, path)]
    role = CALLER_ROLE.get(caller)
    if needed is None or (role is not None and role >= needed):
        assert response.status_code == AUTHORIZED_STATUS.get(path, 200), response.text
    elif role is None:
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    else:
        assert response.status_code == 403, response.text
        assert f"needs the {needed.label} role" in response.json()["message"]


def test_missing_and_invalid_keys_say_which(client: TestClient) -> None:
    missing = client.get("/v1/stats/summary").json()["message"]
    assert "missing API key" in missing
    invalid = client.get("/v1/stats/summary", headers=CALLERS["unknown key"]).json()["message"]
    assert invalid == "invalid API key"


def test_session_names_the_key_and_its_role(client: TestClient) -> None:
    body = client.get("/v1/session", headers=CALLERS["client"]).json()
    assert (body["name"], body["role"], body["open_mode"]) == ("client", "client", False)


# --- the WebSocket --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "subprotocols", "status"),
    [
        ({}, ["reviewstream"], 401),
        ({}, ["reviewstream", f"bearer.{new_key()}"], 401),
        (CALLERS["unknown key"], [], 401),
        ({"origin": "http://evil.example"}, ["reviewstream", f"bearer.{KEYS[Role.ADMIN]}"], 403),
    ],
)
def test_websocket_handshake_is_refused(
    client: TestClient, headers: dict[str, str], subprotocols: list[str], status: int
) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect("/v1/ws", headers=headers, subprotocols=subprotocols),
    ):
        pass  # pragma: no cover - the handshake is refused before this
    assert refused.value.status_code == status
    assert refused.value.json()["error"] in {"unauthorized", "forbidden"}


def test_websocket_viewer_sees_stats_but_may_not_classify(client: TestClient) -> None:
    protocols = ["reviewstream", f"bearer.{KEYS[Role.VIEWER]}"]
    with client.websocket_connect("/v1/ws", subprotocols=protocols) as ws:
        assert ws.accepted_subprotocol == "reviewstream"  # never the key back
        hello = ws.receive_json()
        assert (hello["type"], hello["role"]) == ("hello", "viewer")
        receive_type(ws, "stats")
        ws.send_json({"type": "classify", "id": "c1", "text": "Nice."})
        refused = receive_type(ws, "error")
        assert (refused["id"], refused["status"]) == ("c1", 403)
        ws.send_json({"type": "feedback", "id": "f1", "request_id": "r", "label": 1})
        assert receive_type(ws, "error")["status"] == 403
        ws.send_json({"type": "explain", "id": "e1", "text": "Nice."})
        assert receive_type(ws, "error")["status"] == 403


@pytest.mark.parametrize("caller", ["client", "admin"])
def test_websocket_client_and_admin_may_classify(client: TestClient, caller: str) -> None:
    with client.websocket_connect("/v1/ws", headers=CALLERS[caller]) as ws:
        assert ws.receive_json()["role"] == caller
        ws.send_json({"type": "classify", "id": "c1", "text": "Nice."})
        assert receive_type(ws, "accepted")["id"] == "c1"
        assert receive_type(ws, "error")["status"] == 504  # authorized; no worker here


def test_websocket_same_origin_and_configured_origins_pass() -> None:
    app, _, _ = memory_app(api_keys=records(), allowed_origins=["https://ui.example"])
    key = {"X-API-Key": KEYS[Role.VIEWER]}
    with TestClient(app) as test_client:
        for origin in ["http://testserver", "https://ui.example"]:
            with test_client.websocket_connect("/v1/ws", headers={**key, "origin": origin}) as ws:
                assert ws.receive_json()["type"] == "hello"


# --- where keys come from; open mode ---------------------------------------------------------


def test_keys_cli_stores_only_the_hash_and_the_file_authenticates(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    result = CliRunner().invoke(
        keys_cli, ["new", "--name", "ui", "--role", "client", "--file", str(file)]
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("rs_")
    stored = file.read_text()
    assert key not in stored
    assert json.loads(stored)["keys"] == [{"name": "ui", "role": "client", "sha256": hash_key(key)}]
    refused = CliRunner().invoke(keys_cli, ["new", "--name", "x", "--role", "root"])
    assert refused.exit_code != 0

    app, _, _ = memory_app(api_keys_file=file)
    with TestClient(app) as test_client:
        assert test_client.get("/v1/session", headers={"X-API-Key": key}).json()["role"] == "client"
        assert test_client.get("/v1/session", headers={"X-API-Key": key + "x"}).status_code == 401


def drain(ws: WebSocketTestSession) -> None:
    for _ in range(50):  # stats pushes may come before the close
        ws.receive_json()


def test_a_revoked_key_is_refused_within_seconds_and_its_websockets_closed(
    tmp_path: Path,
) -> None:
    file = tmp_path / "keys.json"

    def make(name: str) -> str:
        made = CliRunner().invoke(keys_cli, ["new", "--name", name, "--file", str(file)])
        assert made.exit_code == 0, made.output
        return made.stdout.strip().splitlines()[-1]

    kept, revoked = make("kept"), make("revoked")
    app, _, _ = memory_app(api_keys_file=file)
    with (
        TestClient(app) as test_client,
        test_client.websocket_connect("/v1/ws", headers={"X-API-Key": revoked}) as ws,
    ):
        assert ws.receive_json()["type"] == "hello"
        assert test_client.get("/v1/session", headers={"X-API-Key": revoked}).status_code == 200
        result = CliRunner().invoke(keys_cli, ["revoke", "--name", "revoked", "--file", str(file)])
        assert result.exit_code == 0, result.output
        deadline = time.monotonic() + 10
        while test_client.get("/v1/session", headers={"X-API-Key": revoked}).status_code != 401:
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.1)
        with pytest.raises(WebSocketDisconnect) as closed:
            drain(ws)
        assert closed.value.code == 1008
        assert test_client.get("/v1/session", headers={"X-API-Key": kept}).status_code == 200
        # A file that does not parse keeps the keys in use.
        file.write_text("{not json")
        time.sleep(1)
        assert test_client.get("/v1/session", headers={"X-API-Key": kept}).status_code == 200
    assert (
        CliRunner().invoke(keys_cli, ["revoke", "--name", "nobody", "--file", str(file)]).exit_code
        != 0
    )


def test_each_key_has_its_own_rate_and_is_told_when_to_come_back() -> None:
    app, _, _ = memory_app(api_keys=records(), rate_limit="3/minute")
    viewer, client = CALLERS["viewer"], CALLERS["client"]
    with TestClient(app) as test_client:
        for _ in range(3):
            assert test_client.get("/v1/session", headers=viewer).status_code == 200
        over = test_client.get("/v1/session", headers=viewer)
        assert over.status_code == 429
        assert over.json()["error"] == "rate_limited"
        assert "over its rate of 3 per 1 minute" in over.json()["message"]
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert test_client.get("/v1/session", headers=client).status_code == 200  # its own
        assert test_client.get("/healthz").status_code == 200  # public routes: no key, no rate
        # WebSocket messages count against the same key's rate.
        with test_client.websocket_connect("/v1/ws", headers=client) as ws:
            ws.receive_json()
            for number in (1, 2):  # the key's second and third requests
                ws.send_json(
                    {"type": "feedback", "id": f"f{number}", "request_id": "r", "label": 1}
                )
                assert receive_type(ws, "feedback_ack")["id"] == f"f{number}"
            ws.send_json({"type": "feedback", "id": "f3", "request_id": "r", "label": 1})
            refused = receive_type(ws, "error")
            assert (refused["id"], refused["status"], refused["error"]) == (
                "f3",
                429,
                "rate_limited",
            )
    with pytest.raises(ValueError, match=r"expected e\.g\."):
        Settings(rate_limit="often")


def test_each_key_may_hold_a_bounded_number_of_websockets() -> None:
    app, _, _ = memory_app(api_keys=records(), ws_max_per_key=2)
    client, viewer = CALLERS["client"], CALLERS["viewer"]
    with TestClient(app) as test_client, contextlib.ExitStack() as sockets:
        first = sockets.enter_context(test_client.websocket_connect("/v1/ws", headers=client))
        first.receive_json()
        with test_client.websocket_connect("/v1/ws", headers=client) as second:
            second.receive_json()
            with pytest.raises(WebSocketDenialResponse) as refused:
                test_client.websocket_connect("/v1/ws", headers=client).__enter__()
            assert refused.value.status_code == 429
            assert "already has 2 open WebSockets" in refused.value.json()["message"]
            with test_client.websocket_connect("/v1/ws", headers=viewer) as other:
                assert other.receive_json()["type"] == "hello"  # another key: its own share
        # The second is closed: its place is free again.
        with test_client.websocket_connect("/v1/ws", headers=client) as again:
            assert again.receive_json()["type"] == "hello"


def test_open_mode_has_no_key_to_limit_by() -> None:
    app, _, _ = memory_app(open_mode=True, rate_limit="1/minute")
    with TestClient(app) as test_client:
        for _ in range(3):
            assert test_client.get("/v1/session").status_code == 200


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    entry = {"name": "ops", "role": "admin", "sha256": hash_key(key)}
    monkeypatch.setenv("RS_GATEWAY_API_KEYS", json.dumps([entry]))
    settings = Settings()
    assert settings.api_keys == [KeyRecord(name="ops", role=Role.ADMIN, sha256=hash_key(key))]
    app = create_app(
        settings,
        bus=MemoryBus,
        stats=MemoryStats(),
        models=MemoryModels(),
        alerts=MemoryAlerts(),
        fleet=MemoryFleet(),
    )
    with TestClient(app) as test_client:
        status = test_client.get("/v1/admin/status", headers={"Authorization": f"Bearer {key}"})
        assert status.status_code == 200
        assert status.json()["api_keys"] == 1


def test_open_mode_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RS_GATEWAY_OPEN_MODE", raising=False)
    assert Settings().open_mode is False
    app: Starlette = create_app(
        Settings(),
        bus=MemoryBus,
        stats=MemoryStats(),
        models=MemoryModels(),
        alerts=MemoryAlerts(),
        fleet=MemoryFleet(),
    )
    with TestClient(app) as test_client:
        assert test_client.get("/v1/stats/summary").status_code == 401


def test_open_mode_lets_everyone_in_and_says_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    app, _, _ = memory_app(open_mode=True)
    with caplog.at_level(logging.WARNING), TestClient(app) as test_client:
        assert test_client.get("/v1/admin/status").json()["open_mode"] is True
        with test_client.websocket_connect("/v1/ws") as ws:
            assert ws.receive_json()["role"] == "admin"
    assert any("OPEN MODE" in r.getMessage() for r in caplog.records)
