"""The REST API over the in-memory ports: every bad input gets a 4xx that says what is wrong,
back-pressure answers 429 with Retry-After, a missing reply is a 504, Kafka down is a 503."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.auth import KeyRecord, Role, hash_key, new_key
from tests.gateway.memory import MemoryBus, MemoryStats, memory_app, prediction_for

LIMITS = {"max_text_chars": 50, "max_batch": 3, "max_body_bytes": 1024, "open_mode": True}


@pytest.fixture
def parts() -> tuple[Starlette, MemoryBus, MemoryStats]:
    return memory_app(**LIMITS)


@pytest.fixture
def client(parts: tuple[Starlette, MemoryBus, MemoryStats]) -> Iterator[TestClient]:
    with TestClient(parts[0]) as test_client:
        yield test_client


def post_raw(client: TestClient, path: str, body: bytes, ctype: str = "application/json") -> Any:
    return client.post(path, content=body, headers={"content-type": ctype})


BAD_BODIES = [
    # (path, raw body, status, error code, words the message must contain)
    ("/v1/classify", b"{nope", 400, "invalid_json", "not valid JSON"),
    ("/v1/classify", b"", 400, "invalid_json", "body is empty"),
    ("/v1/classify", b"[1, 2]", 422, "invalid_body", "object"),
    ("/v1/classify", b"{}", 422, "invalid_body", "text: Field required"),
    ("/v1/classify", b'{"text": 123}', 422, "invalid_body", "text: Input should be a valid string"),
    ("/v1/classify", b'{"text": ""}', 422, "invalid_body", "text: text is empty"),
    ("/v1/classify", b'{"text": " \\n\\t "}', 422, "invalid_body", "text is empty"),
    ("/v1/classify", b'{"text": "ok", "colour": "red"}', 422, "invalid_body", "colour: Extra"),
    ("/v1/classify", b'{"text": "ok", "label": 2}', 422, "invalid_body", "label"),
    ("/v1/classify", b'{"text": "ok", "label": "1"}', 422, "invalid_body", "label"),
    ("/v1/classify", b'{"text": "ok", "label": true}', 422, "invalid_body", "not a boolean"),
    ("/v1/classify", b'{"text": "' + b"x" * 51 + b'"}', 422, "invalid_body", "limit is 50"),
    ("/v1/classify/batch", b'{"reviews": []}', 422, "invalid_body", "reviews"),
    ("/v1/classify/batch", b'{"reviews": "text"}', 422, "invalid_body", "reviews"),
    ("/v1/classify/batch", b'{"reviews": [{"text": "a"}, {"text": ""}]}', 422, "invalid_body",
     "reviews.1.text: text is empty"),
    ("/v1/classify/batch", b'{"reviews": [{"text": "a"}, {"text": "b"}, {"text": "c"}, '
     b'{"text": "d"}]}', 422, "invalid_body", "4 reviews; the limit is 3"),
    ("/v1/feedback", b'{"label": 1}', 422, "invalid_body", "give a request_id or a text"),
    ("/v1/feedback", b'{"request_id": "r1"}', 422, "invalid_body", "label: Field required"),
    ("/v1/feedback", b'{"request_id": "r1", "label": -1}', 422, "invalid_body", "label"),
    ("/v1/feedback", b'{"request_id": 7, "label": 1}', 422, "invalid_body", "request_id"),
    ("/v1/feedback", b'{"text": " ", "label": 1}', 422, "invalid_body", "text is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "code", "words"), BAD_BODIES)
def test_bad_bodies_get_a_clear_4xx(
    client: TestClient, path: str, body: bytes, status: int, code: str, words: str
) -> None:
    response = post_raw(client, path, body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == code
    assert words in payload["message"]


def test_field_errors_are_listed_one_by_one(client: TestClient) -> None:
    response = client.post("/v1/classify", json={"text": "", "extra": 1})
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["details"]}
    assert fields == {"text", "extra"}


def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = post_raw(client, "/v1/classify", b'{"text": "ok"}', "text/plain")
    assert response.status_code == 415
    assert "application/json" in response.json()["message"]


def test_body_over_the_limit_is_413_with_or_without_content_length(client: TestClient) -> None:
    big = b'{"text": "' + b"x" * 2000 + b'"}'
    assert post_raw(client, "/v1/classify", big).status_code == 413

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    response = client.post(
        "/v1/classify", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("/v1/stats/windows?granularity=week", "granularity"),
        ("/v1/stats/windows?limit=0", "limit"),
        ("/v1/stats/windows?limit=many", "limit"),
        ("/v1/stats/windows?colour=red", "colour: Extra inputs"),
        ("/v1/stats/recent?limit=1000", "limit"),
        ("/v1/stats/recent?limit=1&limit=2", "once"),
        ("/v1/stats/summary?x=1", "x: Extra inputs"),
    ],
)
def test_bad_query_parameters_are_422(client: TestClient, url: str, words: str) -> None:
    response = client.get(url)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_query"
    assert words in response.json()["message"]


def test_unknown_route_and_method_answer_json(client: TestClient) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = client.get("/v1/classify")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


def test_no_reply_in_time_is_504_with_a_clear_message(
    client: TestClient, parts: tuple[Starlette, MemoryBus, MemoryStats]
) -> None:
    response = client.post("/v1/classify", json={"text": "Lovely staff."})
    assert response.status_code == 504
    body = response.json()
    assert body["error"] == "reply_timeout"
    assert "no worker answered" in body["message"]
    [published] = parts[1].requests
    assert body["details"][0]["problem"] == f"no reply for {published.request_id}"
    assert parts[0].state.runtime.classifier.replies.in_flight == 0  # nothing leaks


def test_kafka_down_is_503_with_retry_after(
    client: TestClient, parts: tuple[Starlette, MemoryBus, MemoryStats]
) -> None:
    parts[1].up = False
    for path, body in [
        ("/v1/classify", {"text": "ok"}),
        ("/v1/feedback", {"text": "ok", "label": 1}),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"] == "kafka_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "service": "gateway",
        "ready": False,
        "checks": {"kafka": False, "database": True, "background_tasks": True},
        "reason": "not ready: kafka",
    }
    parts[1].up = True
    assert client.post("/v1/feedback", json={"text": "ok", "label": 1}).status_code == 202


def test_stats_database_down_is_503_for_statistics_and_the_gateway_stays_ready(
    client: TestClient, parts: tuple[Starlette, MemoryBus, MemoryStats]
) -> None:
    parts[2].up = False
    response = client.get("/v1/stats/summary")
    assert response.status_code == 503
    assert response.json()["error"] == "stats_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 200  # classification needs Kafka, not the database
    assert ready.json() == {
        "service": "gateway",
        "ready": True,
        "checks": {"kafka": True, "database": False, "background_tasks": True},
        "degraded": ["database"],
    }
    assert client.post("/v1/feedback", json={"text": "ok", "label": 1}).status_code == 202


def test_a_readiness_probe_flood_checks_the_dependencies_once_per_cache_period() -> None:
    app, bus, _ = memory_app(open_mode=True, readiness_cache_s=60)
    with TestClient(app) as client:
        for _ in range(50):
            assert client.get("/readyz").status_code == 200
        assert bus.checks == 1
        bus.up = False
        assert client.get("/readyz").status_code == 200  # the answer of the last check
    app, bus, _ = memory_app(open_mode=True, readiness_cache_s=0)
    with TestClient(app) as client:
        for _ in range(3):
            client.get("/readyz")
        assert bus.checks == 3


def test_feedback_is_published_as_the_contract_message(
    client: TestClient, parts: tuple[Starlette, MemoryBus, MemoryStats]
) -> None:
    response = client.post("/v1/feedback", json={"request_id": "r-42", "label": 0})
    assert response.status_code == 202
    [sent] = parts[1].feedback
    assert (sent.request_id, sent.label, sent.source.value) == ("r-42", 0, "rest")
    assert response.json() == {
        "feedback_id": sent.feedback_id,
        "request_id": "r-42",
        "label": 0,
        "status": "accepted",
    }


def test_security_headers_forbid_inline_and_foreign_scripts(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")  # no CDN
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../settings.py").status_code == 404


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.post("/v1/classify", json={"text": ""})
    text = client.get("/metrics").text
    assert (
        'rs_gateway_http_requests_total{method="POST",route="/v1/classify",status="422"} 1.0'
        in text
    )
    assert "rs_gateway_in_flight 0.0" in text


# --- concurrency: real asyncio, the app in this loop --------------------------------------


@pytest.fixture
async def concurrent() -> AsyncIterator[tuple[httpx.AsyncClient, Starlette, MemoryBus]]:
    app, bus, _ = memory_app(open_mode=True, max_in_flight=2, reply_timeout_s=30)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http, app, bus


async def wait_for(condition: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_in_flight_bound_answers_429_then_replies_are_matched(
    concurrent: tuple[httpx.AsyncClient, Starlette, MemoryBus],
) -> None:
    http, app, bus = concurrent
    first = asyncio.create_task(http.post("/v1/classify", json={"text": "Great coffee."}))
    second = asyncio.create_task(http.post("/v1/classify", json={"text": "Cold soup."}))
    await wait_for(lambda: app.state.runtime.classifier.replies.in_flight == 2)

    refused = await http.post("/v1/classify", json={"text": "One too many."})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "overloaded"
    batch = await http.post("/v1/classify/batch", json={"reviews": [{"text": "x"}]})
    assert batch.status_code == 429
    assert len(bus.requests) == 2  # the refused ones were never published

    great, cold = bus.requests
    assert bus.deliver(prediction_for(cold, label=0, probability=0.2))
    assert bus.deliver(prediction_for(great, label=1, probability=0.9))
    assert not bus.deliver(prediction_for(great))  # a duplicate is ignored
    one, two = (await first).json(), (await second).json()
    assert (one["request_id"], one["verdict"], one["confidence"]) == (
        great.request_id,
        "positive",
        0.9,
    )
    assert (two["request_id"], two["verdict"]) == (cold.request_id, "negative")
    assert two["confidence"] == pytest.approx(0.8)
    assert app.state.runtime.classifier.replies.in_flight == 0

    again = asyncio.create_task(http.post("/v1/classify", json={"text": "Room again."}))
    await wait_for(lambda: len(bus.requests) == 3)
    bus.deliver(prediction_for(bus.requests[2]))
    assert (await again).status_code == 200


async def test_batch_keeps_request_order_whatever_the_reply_order(
    concurrent: tuple[httpx.AsyncClient, Starlette, MemoryBus],
) -> None:
    http, _, bus = concurrent
    call = asyncio.create_task(
        http.post(
            "/v1/classify/batch", json={"reviews": [{"text": "a", "label": 1}, {"text": "b"}]}
        )
    )
    await wait_for(lambda: len(bus.requests) == 2)
    first, second = bus.requests
    assert (first.user_label, second.user_label) == (1, None)
    assert {first.reply_to, second.reply_to} == {"gw-unit"}
    bus.deliver(prediction_for(second, label=0, probability=0.1))
    bus.deliver(prediction_for(first, label=1, probability=0.7))
    results = (await call).json()["results"]
    assert [r["request_id"] for r in results] == [first.request_id, second.request_id]


async def test_a_background_task_that_dies_makes_the_gateway_not_ready() -> None:
    app, _, _ = memory_app(open_mode=True)
    with TestClient(app) as client:
        supervisor = app.state.runtime.supervisor

        async def broken() -> None:
            raise RuntimeError("the live panel froze")

        task = supervisor.start(broken(), name="stats-feed")
        await asyncio.gather(task, return_exceptions=True)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["background_tasks"] is False
        assert ready.json()["reason"] == "background tasks died: stats-feed"
        metrics = client.get("/metrics").text
        assert 'rs_gateway_background_task_failures_total{task="stats-feed"} 1.0' in metrics


async def test_one_key_cannot_take_every_reply_slot() -> None:
    busy, quiet = new_key(), new_key()
    keys = [KeyRecord(name=n, role=Role.CLIENT, sha256=hash_key(k))
            for n, k in (("busy", busy), ("quiet", quiet))]  # fmt: skip
    app, bus, _ = memory_app(api_keys=keys, max_in_flight=4, max_in_flight_per_key=2,
                             reply_timeout_s=30)  # fmt: skip
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:

            def post(key: str, text: str) -> asyncio.Task[httpx.Response]:
                call = http.post("/v1/classify", json={"text": text}, headers={"X-API-Key": key})
                return asyncio.create_task(call)

            waiting = [post(busy, "one"), post(busy, "two")]
            await wait_for(lambda: len(bus.requests) == 2)
            refused = await post(busy, "three")
            assert refused.status_code == 429
            assert "limit 2 per key" in refused.json()["message"]
            assert refused.headers["retry-after"] == "1"
            served = post(quiet, "another client")  # still has its share
            await wait_for(lambda: len(bus.requests) == 3)
            for published in bus.requests:
                bus.deliver(prediction_for(published))
            assert [(await t).status_code for t in [*waiting, served]] == [200, 200, 200]
            again = post(busy, "room again")  # the key's slots came back
            await wait_for(lambda: len(bus.requests) == 4)
            bus.deliver(prediction_for(bus.requests[3]))
            assert (await again).status_code == 200
