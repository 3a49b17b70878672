"""The chat WebSocket over the in-memory ports: the message protocol, its errors and limits,
and the live statistics pushed whenever the store's numbers change."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.gateway.memory import (
    memory_app,
    prediction_for,
    receive_type,
)


def test_classify_then_feedback() -> None:
    app, bus, _ = memory_app(open_mode=True, reply_timeout_s=30)
    with TestClient(app) as client, client.websocket_connect("/v1/ws") as ws:
        receive_type(ws, "hello")
        ws.send_json({"type": "classify", "id": "c1", "text": "<b>Great</b> ramen", "label": 1})
        accepted = receive_type(ws, "accepted")
        [request] = bus.requests
        assert accepted == {"type": "accepted", "id": "c1", "request_id": request.request_id}
        assert (request.text, request.user_label, request.source.value) == (
            "<b>Great</b> ramen",
            1,
            "ws",
        )
        client.portal.call(bus.deliver, prediction_for(request, label=1, probability=0.75))  # type: ignore[union-attr]
        prediction = receive_type(ws, "prediction")
        assert prediction["id"] == "c1"
        assert (prediction["verdict"], prediction["confidence"]) == ("positive", 0.75)
        assert prediction["model_version"] == "7"

        ws.send_json({"type": "feedback", "id": "f1", "request_id": request.request_id, "label": 0})
        ack = receive_type(ws, "feedback_ack")
        [feedback] = bus.feedback
        assert ack["feedback_id"] == feedback.feedback_id
        assert (feedback.request_id, feedback.label, feedback.source.value) == (
            request.request_id,
            0,
            "ws",
        )
        ws.send_json({"type": "ping", "id": "p1"})
        assert receive_type(ws, "pong") == {"type": "pong", "id": "p1"}


@pytest.mark.parametrize(
    ("message", "code", "words", "message_id"),
    [
        ("not json", "invalid_json", "not valid JSON", None),
        ('{"type": "shout", "id": "x1"}', "invalid_message", "does not match any of", "x1"),
        ('{"type": "classify", "id": "c1", "text": ""}', "invalid_message", "text is empty", "c1"),
        ('{"type": "classify", "id": "c2", "text": "' + "x" * 51 + '"}', "invalid_message",
         "limit is 50", "c2"),
        ('{"type": "classify", "id": "c3"}', "invalid_message", "text: Field required", "c3"),
        ('{"type": "classify", "id": "c4", "text": "ok", "html": 1}', "invalid_message",
         "Extra inputs", "c4"),
        ('{"type": "feedback", "id": "f1", "request_id": "r", "label": "yes"}',
         "invalid_message", "label", "f1"),
        ("[1]", "invalid_message", "", None),
        ('{"id": "n1", "text": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid_json",
         "recursion limit", None),
    ],
)  # fmt: skip
def test_bad_messages_get_an_error_and_the_socket_stays_open(
    message: str, code: str, words: str, message_id: str | None
) -> None:
    app, _, _ = memory_app(open_mode=True, max_text_chars=50)
    with TestClient(app) as client, client.websocket_connect("/v1/ws") as ws:
        receive_type(ws, "hello")
        ws.send_text(message)
        error = receive_type(ws, "error")
        assert (error["error"], error["id"]) == (code, message_id)
        assert words in error["message"]
        assert error["status"] in {400, 422}
        ws.send_bytes(b"\x00binary")
        assert receive_type(ws, "error")["message"] == "send JSON text frames"
        ws.send_json({"type": "ping", "id": "still-open"})
        assert receive_type(ws, "pong")["id"] == "still-open"


def test_each_socket_has_its_own_bound_on_pending_reviews() -> None:
    app, bus, _ = memory_app(open_mode=True, ws_max_pending=1, reply_timeout_s=30)
    with TestClient(app) as client, client.websocket_connect("/v1/ws") as ws:
        ws.send_json({"type": "classify", "id": "c1", "text": "first"})
        receive_type(ws, "accepted")
        ws.send_json({"type": "classify", "id": "c2", "text": "second"})
        busy = receive_type(ws, "error")
        assert (busy["id"], busy["status"], busy["retry_after_s"]) == ("c2", 429, 1)
        client.portal.call(bus.deliver, prediction_for(bus.requests[0]))  # type: ignore[union-attr]
        assert receive_type(ws, "prediction")["id"] == "c1"
        ws.send_json({"type": "classify", "id": "c3", "text": "third"})
        assert receive_type(ws, "accepted")["id"] == "c3"


def test_feedback_shares_the_sockets_bound_on_pending_work() -> None:
    app, bus, _ = memory_app(open_mode=True, ws_max_pending=1, reply_timeout_s=30)
    with TestClient(app) as client, client.websocket_connect("/v1/ws") as ws:
        ws.send_json({"type": "classify", "id": "c1", "text": "first"})
        receive_type(ws, "accepted")
        request_id = bus.requests[0].request_id
        ws.send_json({"type": "feedback", "id": "f1", "request_id": request_id, "label": 1})
        busy = receive_type(ws, "error")
        assert (busy["id"], busy["status"], busy["error"]) == ("f1", 429, "overloaded")
        assert bus.feedback == []
        client.portal.call(bus.deliver, prediction_for(bus.requests[0]))  # type: ignore[union-attr]
        assert receive_type(ws, "prediction")["id"] == "c1"
        ws.send_json({"type": "feedback", "id": "f2", "request_id": request_id, "label": 1})
        assert receive_type(ws, "feedback_ack")["id"] == "f2"
        ws.send_json({"type": "classify", "id": "c2", "text": "the slot is free again"})
        assert receive_type(ws, "accepted")["id"] == "c2"


def test_a_silent_socket_is_closed_after_the_idle_timeout_and_pings_keep_one_open() -> None:
    app, _, _ = memory_app(open_mode=True, ws_idle_timeout_s=0.5)
    with TestClient(app) as client:
        with client.websocket_connect("/v1/ws") as ws:
            assert receive_type(ws, "hello")["idle_timeout_s"] == 0.5
            for number in range(5):  # 1 s in all, a ping every 0.2 s
                time.sleep(0.2)
                ws.send_json({"type": "ping", "id": f"p{number}"})
                assert receive_type(ws, "pong")["id"] == f"p{number}"
        with client.websocket_connect("/v1/ws") as ws:
            receive_type(ws, "hello")
            with pytest.raises(WebSocketDisconnect) as closed:
                receive_type(ws, "never")
            assert closed.value.code == 1000
            assert "idle for 0.5 s" in closed.value.reason


def test_kafka_down_is_an_error_message_not_a_dropped_socket() -> None:
    app, bus, _ = memory_app(open_mode=True)
    bus.up = False
    with TestClient(app) as client, client.websocket_connect("/v1/ws") as ws:
        ws.send_json({"type": "classify", "id": "c1", "text": "hello"})
        error = receive_type(ws, "error")
        assert (error["id"], error["status"], error["error"]) == ("c1", 503, "kafka_unavailable")


def test_closing_the_socket_releases_its_pending_reviews() -> None:
    app, bus, _ = memory_app(open_mode=True, reply_timeout_s=30)
    replies = app.state.runtime.classifier.replies
    with TestClient(app) as client:
        with client.websocket_connect("/v1/ws") as ws:
            ws.send_json({"type": "classify", "id": "c1", "text": "hello"})
            receive_type(ws, "accepted")
            assert replies.in_flight == 1
        # the session ends when the client goes; its wait is cancelled, its slot freed
        assert client.portal.call(_settled, app)  # type: ignore[union-attr]
    assert replies.in_flight == 0
    assert not bus.deliver(prediction_for(bus.requests[0]))  # late: nobody waits


async def _settled(app: Starlette) -> bool:
    for _ in range(500):
        if (
            app.state.runtime.classifier.replies.in_flight == 0
            and app.state.runtime.websockets == 0
        ):
            return True
        await asyncio.sleep(0.01)
    return False


def test_stats_are_pushed_when_the_numbers_change() -> None:
    app, _, stats = memory_app(open_mode=True)
    with TestClient(app) as client, client.websocket_connect("/v1/ws") as ws:
        first = receive_type(ws, "stats")["stats"]
        assert first["available"] is True
        assert first["summary"]["predictions"] == 0
        stats.predictions, stats.positives = 5, 4  # someone else's traffic, seen by the store
        pushed = receive_type(ws, "stats")["stats"]
        assert (pushed["summary"]["predictions"], pushed["summary"]["positive_share"]) == (5, 0.8)
        stats.up = False
        down = receive_type(ws, "stats")["stats"]
        assert down["available"] is False
        assert "unreachable" in down["message"]
        assert down["summary"]["predictions"] == 5  # the last numbers stay on screen
