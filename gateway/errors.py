"""The gateway's errors, and the one place where they become HTTP and WebSocket answers.

::

    GatewayError                 500 internal
    ├── BadRequest               400 invalid_json, 413 body_too_large, 415 unsupported_media_type,
    │   └── ValidationFailed     422 invalid_body / invalid_query / invalid_message (with details)
    ├── Unauthorized             401 unauthorized (missing or unknown API key)
    ├── Forbidden                403 forbidden (the key's role is not enough)
    ├── NotFound                 404 not_found, 405 method_not_allowed
    ├── Overloaded               429 overloaded + Retry-After (the in-flight bound is reached)
    │   └── RateLimited          429 rate_limited + Retry-After (the key is over its rate)
    ├── Unavailable              503 + Retry-After
    │   ├── ModelNotDeployed     503 no_model (at once: no model is deployed yet)
    │   ├── KafkaUnavailable     503 kafka_unavailable
    │   └── StatsUnavailable     503 stats_unavailable
    ├── WorkerRefused            422 rejected_by_worker (a worker cannot classify this review),
    │                            502 inference_failed (the model failed on it); answered at once
    │                            from the worker's error reply, not after the reply timeout
    └── ReplyTimeout             504 reply_timeout (published, but no prediction came in time)

A reused ``Idempotency-Key`` with another body is a ValidationFailed (422 idempotency_conflict).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)


class GatewayError(Exception):
    status = 500
    code = "internal"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: int | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.details = details


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class ValidationFailed(BadRequest):
    status = 422
    code = "invalid_body"

    @classmethod
    def from_pydantic(cls, exc: ValidationError, *, code: str = "invalid_body") -> ValidationFailed:
        details = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "(body)",
                "problem": e["msg"].removeprefix("Value error, "),
            }
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
        return cls(summary, code=code, details=details)


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Overloaded(GatewayError):
    status = 429
    code = "overloaded"


class RateLimited(Overloaded):
    code = "rate_limited"


class Unavailable(GatewayError):
    status = 503
    code = "unavailable"


class ModelNotDeployed(Unavailable):
    code = "no_model"


class KafkaUnavailable(Unavailable):
    code = "kafka_unavailable"


class StatsUnavailable(Unavailable):
    code = "stats_unavailable"


class WorkerRefused(GatewayError):
    """A worker answered the request with an error (``contracts.RequestFailed``)."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str,
        invalid: bool,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(
            message,
            status=422 if invalid else 502,
            code="rejected_by_worker" if invalid else "inference_failed",
            details=details,
        )
        self.request_id = request_id
        self.invalid = invalid

    def in_batch(self, index: int) -> WorkerRefused:
        """The same refusal naming the review's place in a batch (a new error: the first is
        shared by every waiter of that request)."""
        message = f"review {index}: {self.message}"
        return WorkerRefused(
            message,
            request_id=self.request_id,
            invalid=self.invalid,
            details=[{"field": f"reviews.{index}", "problem": message}],
        )


class ReplyTimeout(GatewayError):
    status = 504
    code = "reply_timeout"


def error_body(exc: GatewayError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    if exc.retry_after is not None:
        body["retry_after_s"] = exc.retry_after
    return body


def http_response(exc: GatewayError) -> JSONResponse:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="reviewstream"'
    return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)


def ws_message(exc: GatewayError, message_id: str | None) -> dict[str, Any]:
    """The same error as one WebSocket message, tied to the client's message id."""
    return {"type": "error", "id": message_id, "status": exc.status, **error_body(exc)}


_STARLETTE_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


async def handle_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return http_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answer in the same JSON shape as ours."""
    assert isinstance(exc, HTTPException)
    code = _STARLETTE_CODES.get(exc.status_code, "http_error")
    error = GatewayError(str(exc.detail), status=exc.status_code, code=code)
    response = http_response(error)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return http_response(GatewayError("internal error; see the gateway log"))


EXCEPTION_HANDLERS = {
    GatewayError: handle_gateway_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
