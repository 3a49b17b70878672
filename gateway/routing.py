"""Routes that carry their own contract: who may call them and what they take and give.

One :class:`Operation` per route is the single source for the auth check (here), the HTTP
metrics (here) and the OpenAPI document (``gateway.openapi``), so the three cannot drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

from gateway.auth import KeyRing, Principal, Role, key_from_headers
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.ratelimit import KeyRates

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    role: Role | None  # None: public
    ok_status: int = 200
    ok_model: type[BaseModel] | None = None
    ok_media: str = "application/json"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: Mapping[int, str] = field(default_factory=dict)
    error_model: type[BaseModel] | None = None  # None: ErrorOut
    description: str = ""
    # Schemas that travel outside request/response bodies (WebSocket messages).
    extra_models: Sequence[type[BaseModel]] = ()
    extensions: Mapping[str, Any] = field(default_factory=dict)


class ApiRoute(Route):
    def __init__(self, path: str, endpoint: Endpoint, *, method: str, operation: Operation) -> None:
        super().__init__(path, endpoint, methods=[method], name=endpoint.__name__)
        self.operation = operation


class ApiWebSocketRoute(WebSocketRoute):
    def __init__(
        self,
        path: str,
        endpoint: Callable[[WebSocket], Awaitable[None]],
        *,
        operation: Operation,
    ) -> None:
        super().__init__(path, endpoint, name=endpoint.__name__)
        self.operation = operation


class ApiMount(Mount):
    """A mounted app (the static files) with its documented operation."""

    def __init__(self, path: str, app: ASGIApp, *, name: str, operation: Operation) -> None:
        super().__init__(path, app=app, name=name)
        self.operation = operation


def principal_of(request: Request) -> Principal:
    principal = request.state.principal
    assert isinstance(principal, Principal)
    return principal


class Guard:
    """Wraps endpoints: authenticate and authorize by the operation's role, count the answer."""

    def __init__(self, keyring: KeyRing, metrics: Metrics, rates: KeyRates) -> None:
        self.keyring = keyring
        self.metrics = metrics
        self.rates = rates

    def route(self, path: str, endpoint: Endpoint, *, method: str, op: Operation) -> ApiRoute:
        keyring, counter, rates = self.keyring, self.metrics.http_requests, self.rates

        async def guarded(request: Request) -> Response:
            status = 500
            try:
                if op.role is not None:
                    principal = keyring.authenticate(key_from_headers(request.headers))
                    keyring.authorize(principal, op.role)
                    rates.take(principal)
                    request.state.principal = principal
                response = await endpoint(request)
                status = response.status_code
                return response
            except GatewayError as exc:
                status = exc.status
                raise
            finally:
                counter.labels(path, request.method, str(status)).inc()

        guarded.__name__ = endpoint.__name__
        guarded.__doc__ = endpoint.__doc__
        return ApiRoute(path, guarded, method=method, operation=op)
