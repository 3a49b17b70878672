"""The OpenAPI document is generated from the routes, so it always lists exactly them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient

from gateway.openapi import openapi_path
from tests.gateway.memory import memory_app


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[TestClient, dict[str, Any]]]:
    app, _, _ = memory_app(open_mode=True)
    with TestClient(app) as client:
        yield client, client.get("/openapi.json").json()


def test_every_route_is_documented_with_its_methods(
    served: tuple[TestClient, dict[str, Any]],
) -> None:
    client, doc = served
    expected: set[tuple[str, str]] = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route):
            methods = (route.methods or set()) - {"HEAD"}
            expected |= {(openapi_path(route.path), m.lower()) for m in methods}
        elif isinstance(route, WebSocketRoute):
            expected.add((route.path, "get"))
        elif isinstance(route, Mount):
            expected.add((route.path + "/{path}", "get"))
        else:
            pytest.fail(f"unexpected route type {route!r}")
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == expected
    assert len(expected) >= 15


def test_every_reference_resolves_and_every_operation_answers_something(
    served: tuple[TestClient, dict[str, Any]],
) -> None:
    _, doc = served
    schemas = doc["components"]["schemas"]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    found = list(refs(doc))
    assert found
    for ref in found:
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    ids = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
            assert op["summary"]
            ids.append(op["operationId"])
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_security_and_roles_are_in_the_document(served: tuple[TestClient, dict[str, Any]]) -> None:
    _, doc = served
    classify = doc["paths"]["/v1/classify"]["post"]
    assert classify["x-required-role"] == "client"
    assert {"bearer": []} in classify["security"]
    assert {"401", "403", "422", "429", "503", "504"} <= set(classify["responses"])
    body = classify["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    review = doc["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert review["additionalProperties"] is False
    assert set(review["properties"]) == {"text", "label"}
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert doc["paths"]["/v1/admin/status"]["get"]["x-required-role"] == "admin"
    windows = doc["paths"]["/v1/stats/windows"]["get"]["parameters"]
    assert {p["name"] for p in windows} == {"granularity", "limit", "model_version"}
    ws = doc["paths"]["/v1/ws"]["get"]
    assert ws["x-websocket"] is True
    assert "101" in ws["responses"]
    assert len(ws["x-messages"]) >= 3
