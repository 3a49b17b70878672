"""The OpenAPI 3.1 document, generated from the routes' operations and the pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.routing import BaseRoute

from gateway.routing import ApiMount, ApiRoute, ApiWebSocketRoute, Operation
from gateway.schemas import ErrorOut

_PARAM = re.compile(r"{([^}:]+)(:[^}]+)?}")
REF = "#/components/schemas/{model}"


def openapi_path(path: str) -> str:
    """Starlette's ``/static/{path:path}`` is OpenAPI's ``/static/{path}``."""
    return _PARAM.sub(r"{\1}", path)


def documented(routes: list[BaseRoute]) -> list[tuple[str, str, Operation]]:
    """(OpenAPI path, method, operation) of every route; a route without one is a bug."""
    found = []
    for route in routes:
        if isinstance(route, ApiRoute):
            methods = sorted(m for m in route.methods or () if m != "HEAD")
            found += [(openapi_path(route.path), m.lower(), route.operation) for m in methods]
        elif isinstance(route, ApiWebSocketRoute):
            found.append((openapi_path(route.path), "get", route.operation))
        elif isinstance(route, ApiMount):
            found.append((openapi_path(route.path + "/{path}"), "get", route.operation))
        else:
            raise TypeError(f"route {route!r} has no documented operation")
    return found


def openapi_document(routes: list[BaseRoute], *, title: str, version: str) -> dict[str, Any]:
    entries = documented(routes)
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for _, _, op in entries:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        for model in (op.ok_model, op.error_model):
            if model is not None:
                wanted.append((model, "serialization"))
        wanted += [(m, "validation") for m in op.extra_models]
    wanted = list(dict.fromkeys(wanted))
    refs, defs = models_json_schema(wanted, ref_template=REF)

    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in entries:
        paths.setdefault(path, {})[method] = _operation(path, op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Classify reviews, send feedback, read live statistics. Roles are "
            "ordered: viewer < client < admin (x-required-role on each operation).",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def _operation(path: str, op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    error_schema = refs[(op.error_model or ErrorOut, "serialization")]
    error = {"content": {"application/json": {"schema": error_schema}}}
    auth_error = {"content": {"application/json": {"schema": refs[(ErrorOut, "serialization")]}}}
    ok: dict[str, Any] = {"description": "OK"}
    if op.ok_model is not None:
        ok["content"] = {op.ok_media: {"schema": refs[(op.ok_model, "serialization")]}}
    elif op.ok_media != "application/json":
        ok["content"] = {op.ok_media: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.ok_status): ok}
    for status, why in sorted(op.errors.items()):
        responses[str(status)] = {"description": why, **error}
    doc: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": _operation_id(path, op),
        "responses": responses,
        "x-required-role": op.role.label if op.role is not None else None,
    }
    if op.description:
        doc["description"] = op.description
    if op.role is not None:
        doc["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
        responses.setdefault("401", {"description": "missing or invalid API key", **auth_error})
        responses.setdefault(
            "403", {"description": f"needs the {op.role.label} role", **auth_error}
        )
    else:
        doc["security"] = []
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name, _ in _PARAM.findall(path)
    ]
    if op.query is not None:
        schema = op.query.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    if op.extra_models:
        doc["x-messages"] = [refs[(m, "validation")] for m in op.extra_models]
    doc.update(op.extensions)
    return doc


def _operation_id(path: str, op: Operation) -> str:
    words = re.findall(r"[a-z0-9]+", op.summary.lower())
    return "_".join(words[:6]) or re.sub(r"\W+", "_", path).strip("_")
