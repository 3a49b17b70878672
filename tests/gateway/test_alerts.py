"""The alerts webhook, GET /v1/alerts and the WebSocket push, over the in-memory ports
(the real Kafka round trip, through Alertmanager, is tests/deploy/test_alerting.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.testclient import TestClient

from contracts import Alert, AlertStatus
from gateway.alerts import AlertBoard
from tests.gateway.memory import memory_app, receive_type

STARTED = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def webhook(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """Alertmanager 0.25's body, as it posts it (extra fields included)."""
    return {
        "receiver": "reviewstream-gateway",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {"alertname": "ServiceDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9095",
        "version": "4",
        "groupKey": '{}:{alertname="ServiceDown"}',
        "truncatedAlerts": 0,
    }


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "ServiceDown", "severity": "critical", **labels},
        "annotations": {"summary": "workers at w:9101 is down", "description": "no scrape"},
        "startsAt": "2026-12-02T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-02T10:05:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up+%3D%3D+0",
        "fingerprint": "c0ffee" + labels.get("instance", ""),
    }


def test_webhook_publishes_each_alert_as_a_contract_message() -> None:
    app, bus, _ = memory_app(open_mode=True)
    with TestClient(app) as client:
        body = webhook(alert(instance="w1"), alert("resolved", instance="w2"))
        response = client.post("/v1/admin/alerts", json=body)
        assert response.status_code == 202, response.text
        assert response.json() == {"published": 2}
    firing, resolved = bus.alerts
    assert (firing.name, firing.status, firing.severity) == (
        "ServiceDown",
        AlertStatus.FIRING,
        "critical",
    )
    assert firing.summary == "workers at w:9101 is down"
    assert firing.starts_at == STARTED
    assert firing.ends_at is None  # Alertmanager's "year 1" for a firing alert
    assert firing.labels["instance"] == "w1"
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.ends_at == datetime(2026, 12, 2, 10, 5, tzinfo=UTC)


def test_webhook_refuses_what_is_not_alertmanagers_v4_with_a_message() -> None:
    app, bus, _ = memory_app(open_mode=True)
    with TestClient(app) as client:
        cases = [
            ({**webhook(alert()), "version": "3"}, "version"),
            (webhook(), "alerts"),
            (webhook({**alert(), "labels": {"severity": "x"}}), "alertname"),
            (webhook({**alert(), "status": "pending"}), "status"),
            (webhook({k: v for k, v in alert().items() if k != "fingerprint"}), "fingerprint"),
        ]
        for body, word in cases:
            response = client.post("/v1/admin/alerts", json=body)
            assert response.status_code == 422, response.text
            assert word in response.text
        assert client.post("/v1/admin/alerts", content=b"{").status_code in {400, 415}
    assert bus.alerts == []


def test_kafka_down_answers_503_so_alertmanager_retries() -> None:
    app, bus, _ = memory_app(open_mode=True)
    bus.up = False
    with TestClient(app) as client:
        assert client.post("/v1/admin/alerts", json=webhook(alert())).status_code == 503


def read_back(board: AlertBoard, *alerts: Alert) -> None:
    for a in alerts:
        board.add(a)


def test_get_lists_one_entry_per_alert_with_its_latest_status_and_pushes_changes() -> None:
    app, bus, _ = memory_app(open_mode=True)
    board: AlertBoard = app.state.runtime.alerts.board
    with TestClient(app) as client:
        client.post("/v1/admin/alerts", json=webhook(alert(instance="w1")))
        read_back(board, *bus.alerts)  # as the alerts topic hands it back
        with client.websocket_connect("/v1/ws") as ws:
            listed = receive_type(ws, "alerts")["alerts"]
            assert [(a["name"], a["status"]) for a in listed] == [("ServiceDown", "firing")]
            # The same alert again (Alertmanager repeats): no news; resolved: news.
            read_back(board, bus.alerts[0])
            client.post("/v1/admin/alerts", json=webhook(alert("resolved", instance="w1")))
            read_back(board, bus.alerts[-1])
            pushed = receive_type(ws, "alert")
            assert (pushed["status"], pushed["summary"]) == (
                "resolved",
                "workers at w:9101 is down",
            )
        body = client.get("/v1/alerts").json()
    assert [a["status"] for a in body["alerts"]] == ["resolved"]
    assert body["alerts"][0]["labels"]["instance"] == "w1"


def test_the_board_keeps_the_last_n() -> None:
    board = AlertBoard(keep=2)
    for i in range(3):
        board.add(Alert(name=f"A{i}", status=AlertStatus.FIRING, starts_at=STARTED,
                        fingerprint=f"f{i}"))  # fmt: skip
    assert [a.name for a in board.recent()] == ["A2", "A1"]
