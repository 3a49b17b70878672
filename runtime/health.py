"""The one ``/healthz``, ``/readyz`` and ``/metrics`` of every service, with one body.

- ``/healthz``: 200 ``{"service": ..., "status": "alive"}`` while the event loop answers.
- ``/readyz``: 200 when every required check holds, else 503; the body is always
  ``{"service": ..., "ready": bool, "checks": {"kafka": true, ...}, "reason": ...}``,
  ``reason`` saying for a person what is missing (absent when ready), and ``degraded``
  naming the optional checks that fail (a part the service does without, e.g. the gateway's
  statistics database).
- ``/metrics``: the Prometheus text format of the service's registry (``runtime.metrics``).

:class:`HealthServer` serves them over aiohttp for the services without a web framework of
their own; the gateway serves the same bodies from its Starlette app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Readiness:
    checks: Mapping[str, bool] = field(default_factory=dict)
    reason: str | None = None
    optional: frozenset[str] = frozenset()  # reported, not needed to serve

    @property
    def ready(self) -> bool:
        return all(ok for name, ok in self.checks.items() if name not in self.optional)

    def body(self, service: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "service": service,
            "ready": self.ready,
            "checks": dict(self.checks),
        }
        failing = [name for name, ok in self.checks.items() if not ok]
        if not self.ready:
            missing = [name for name in failing if name not in self.optional]
            body["reason"] = self.reason or f"not ready: {', '.join(missing)}"
        degraded = [name for name in failing if name in self.optional]
        if degraded:
            body["degraded"] = degraded
        return body


class Recent(Generic[T]):
    """``check()``'s result, run again only once it is ``max_age_s`` old; callers that come
    meanwhile share it (one run at a time)."""

    def __init__(self, check: Callable[[], Awaitable[T]], *, max_age_s: float) -> None:
        self._check = check
        self._max_age_s = max_age_s
        self._lock = asyncio.Lock()
        self._result: tuple[float, T] | None = None

    async def __call__(self) -> T:
        async with self._lock:
            if self._result is None or time.monotonic() - self._result[0] >= self._max_age_s:
                self._result = (time.monotonic(), await self._check())
            return self._result[1]


def alive_body(service: str) -> dict[str, str]:
    return {"service": service, "status": "alive"}


ReadinessCheck = Callable[[], Awaitable[Readiness]]


class HealthServer:
    def __init__(
        self,
        *,
        service: str,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: ReadinessCheck,
        routes: Sequence[web.RouteDef] = (),
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.registry = registry
        self.readiness = readiness
        self.routes = routes  # a service's own few endpoints beside these (the watcher's webhook)
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen, log the address and return the bound port (useful when asked for port 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_routes(self.routes)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info(
            "%s health and metrics on http://%s:%d (/healthz /readyz /metrics)",
            self.service,
            self.host,
            self.port,
        )
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(alive_body(self.service))

    async def _readyz(self, request: web.Request) -> web.Response:
        readiness = await self.readiness()
        return web.json_response(
            readiness.body(self.service), status=200 if readiness.ready else 503
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
