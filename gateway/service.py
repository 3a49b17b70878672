"""The gateway process: the app under uvicorn, over HTTPS when a certificate is configured,
and the operations port (/healthz, /readyz, /metrics without a key) for probes and Prometheus.

uvicorn handles SIGINT/SIGTERM: it stops accepting, lets open requests finish (up to the
reply timeout), closes WebSockets, then runs the app's lifespan shutdown.
"""

from __future__ import annotations

import logging
import math
from types import TracebackType

import uvicorn

from gateway.app import create_app
from gateway.context import Context
from gateway.settings import Settings
from runtime.health import HealthServer

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server: uvicorn.Server | None = None
        self._operations: HealthServer | None = None

    async def __aenter__(self) -> Gateway:
        s = self.settings
        app = create_app(s)
        runtime: Context = app.state.runtime
        self._operations = HealthServer(
            service="gateway",
            host=s.ops_host,
            port=s.ops_port,
            registry=runtime.metrics.registry,
            readiness=runtime.readiness,
        )
        config = uvicorn.Config(
            app,
            host=s.host,
            port=s.port,
            lifespan="on",
            log_config=None,  # logging is configured once, in __main__
            access_log=False,
            ws_max_size=s.max_body_bytes,
            timeout_graceful_shutdown=math.ceil(s.reply_timeout_s) + 1,
            ssl_certfile=s.tls_certfile,
            ssl_keyfile=s.tls_keyfile,
        )
        self._server = uvicorn.Server(config)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._operations is not None:
            await self._operations.stop()

    async def run(self) -> None:
        assert self._server is not None, "use 'async with Gateway(settings)'"
        assert self._operations is not None
        await self._operations.start()
        scheme = "https" if self.settings.tls else "http"
        log.info("serving on %s://%s:%d", scheme, self.settings.host, self.settings.port)
        await self._server.serve()

    def stop(self) -> None:
        """Idempotent: ask uvicorn to drain and exit."""
        if self._server is not None:
            self._server.should_exit = True
