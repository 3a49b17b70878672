"""Request bodies and query strings -> API models, once, at the edge; each failure says why."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.errors import BadRequest, ValidationFailed
from gateway.schemas import Limits

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def _json_problem(exc: ValidationError) -> str | None:
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            return f"the body is not valid JSON: {error['msg'].removeprefix('Invalid JSON: ')}"
    return None


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise BadRequest(
            f"send the body as JSON with 'Content-Type: application/json' "
            f"(got {content_type or 'none'!r})",
            status=415,
            code="unsupported_media_type",
        )
    too_large = BadRequest(
        f"the body is larger than {max_bytes} bytes", status=413, code="body_too_large"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    if not body.strip():
        raise BadRequest("the body is empty; send a JSON object", code="invalid_json")
    return bytes(body)


def parse_json(raw: bytes | str, validate: Callable[..., T], *, limits: Limits, code: str) -> T:
    """``validate`` is a model's ``model_validate_json`` or a TypeAdapter's ``validate_json``."""
    try:
        return validate(raw, strict=True, context={"limits": limits})
    except ValidationError as exc:
        problem = _json_problem(exc)
        if problem is not None:
            raise BadRequest(problem, code="invalid_json") from None
        raise ValidationFailed.from_pydantic(exc, code=code) from None


async def read_json(request: Request, model: type[M], *, limits: Limits, max_bytes: int) -> M:
    raw = await read_body(request, max_bytes=max_bytes)
    return parse_json(raw, model.model_validate_json, limits=limits, code="invalid_body")


def read_query(request: Request, model: type[M]) -> M:
    params = request.query_params
    repeated = sorted({k for k in params if len(params.getlist(k)) > 1})
    if repeated:
        raise ValidationFailed(
            f"give each query parameter once ({', '.join(repeated)})", code="invalid_query"
        )
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc, code="invalid_query") from None
