"""No model deployed: every way in (REST one, REST batch, WebSocket) answers 503 no_model at
once, publishes nothing, and says so to the page; unknown lets reviews through; a deployment
announced later is followed without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from contracts import ModelChanged
from gateway.deployment import NO_MODEL, UNKNOWN, Deployment, ModelState
from tests.gateway.memory import MemoryBus, MemoryModels, memory_app, receive_type

V3 = Deployment(ModelState.DEPLOYED, "reviewstream-sentiment", "3")


@pytest.fixture
def app_bus_models() -> tuple[Starlette, MemoryBus, MemoryModels]:
    app, bus, _ = memory_app(open_mode=True, reply_timeout_s=0.3)
    models = app.state.runtime.models
    assert isinstance(models, MemoryModels)
    return app, bus, models


@pytest.fixture
def client(app_bus_models: tuple[Starlette, MemoryBus, MemoryModels]) -> Iterator[TestClient]:
    with TestClient(app_bus_models[0]) as test_client:
        yield test_client


def set_models(client: TestClient, models: MemoryModels, deployment: Deployment) -> None:
    client.portal.call(models.set, deployment)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/classify", {"text": "Lovely staff."}),
        ("/v1/classify/batch", {"reviews": [{"text": "Lovely."}, {"text": "Cold soup."}]}),
    ],
)
def test_rest_answers_503_no_model_at_once(
    client: TestClient,
    app_bus_models: tuple[Starlette, MemoryBus, MemoryModels],
    path: str,
    body: dict[str, object],
) -> None:
    _, bus, models = app_bus_models
    set_models(client, models, NO_MODEL)
    started = time.monotonic()
    response = client.post(path, json=body)
    assert time.monotonic() - started < 1.0
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    answer = response.json()
    assert answer["error"] == "no_model"
    assert answer["message"].startswith("no model is deployed yet")
    assert bus.requests == []  # nothing published: no worker could answer it
    metrics = client.get("/metrics").text
    assert 'rs_gateway_reviews_total{outcome="no_model",transport="rest"}' in metrics
    # Feedback does not need a model.
    assert client.post("/v1/feedback", json={"text": "ok", "label": 1}).status_code == 202


def test_unknown_lets_reviews_through_and_deployed_is_followed(
    client: TestClient, app_bus_models: tuple[Starlette, MemoryBus, MemoryModels]
) -> None:
    _, bus, models = app_bus_models
    set_models(client, models, UNKNOWN)  # the models topic not read yet
    assert client.post("/v1/classify", json={"text": "a"}).status_code == 504  # published
    assert len(bus.requests) == 1
    assert client.get("/v1/model").json() == {"state": "unknown", "model_name": None,
                                              "version": None}  # fmt: skip
    set_models(client, models, NO_MODEL)
    assert client.post("/v1/classify", json={"text": "b"}).status_code == 503
    set_models(client, models, V3)
    assert client.post("/v1/classify", json={"text": "c"}).status_code == 504  # published
    assert len(bus.requests) == 2
    assert client.get("/v1/model").json() == {
        "state": "deployed",
        "model_name": "reviewstream-sentiment",
        "version": "3",
    }
    assert client.get("/v1/admin/status").json()["model"]["version"] == "3"


def test_the_page_is_told_the_state_and_its_changes(
    client: TestClient, app_bus_models: tuple[Starlette, MemoryBus, MemoryModels]
) -> None:
    _, bus, models = app_bus_models
    set_models(client, models, NO_MODEL)
    with client.websocket_connect("/v1/ws") as ws:
        assert receive_type(ws, "model")["state"] == "none"
        ws.send_json({"type": "classify", "id": "c1", "text": "Great ramen."})
        refused = receive_type(ws, "error")
        assert (refused["id"], refused["status"], refused["error"]) == ("c1", 503, "no_model")
        assert refused["message"].startswith("no model is deployed yet")
        set_models(client, models, V3)
        assert receive_type(ws, "model") == {
            "type": "model",
            "state": "deployed",
            "model_name": "reviewstream-sentiment",
            "version": "3",
        }
        ws.send_json({"type": "classify", "id": "c2", "text": "Great ramen."})
        assert receive_type(ws, "accepted")["id"] == "c2"
    assert len(bus.requests) == 1


def test_the_newest_announcement_is_the_deployment() -> None:
    now = datetime.now(UTC)

    def event(name: str, version: str, minutes_ago: int) -> ModelChanged:
        return ModelChanged(
            model_name=name,
            version=version,
            alias="production",
            artifact_uri=f"models:/{name}/{version}",
            sha256="a" * 64,
            changed_at=now - timedelta(minutes=minutes_ago),
        )

    assert Deployment.of({}) == NO_MODEL
    latest = {"a": event("a", "4", 5), "b": event("b", "2", 1)}
    assert Deployment.of(latest) == Deployment(ModelState.DEPLOYED, "b", "2")
