"""``/healthz``, ``/readyz`` and ``/metrics`` over HTTP (aiohttp), for any service without a
web framework of its own (the workers and the registry watcher).

- ``/healthz``: 200 while the process's event loop answers.
- ``/readyz``: 200 when ``readiness()`` returns None, else 503 with the reason it returned.
- ``/metrics``: the Prometheus text format of the service's own registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Readiness = Callable[[], str | None]


class HealthServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Readiness,
        service: str,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self.readiness = readiness
        self.service = service
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen, log the address and return the bound port (useful when asked for port 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
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
        return web.json_response({"status": "alive", "service": self.service})

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = self.readiness()
        if reason is None:
            return web.json_response({"ready": True, "service": self.service})
        return web.json_response(
            {"ready": False, "service": self.service, "reason": reason}, status=503
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
