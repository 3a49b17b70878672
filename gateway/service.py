"""The gateway process: the app under uvicorn, over HTTPS when a certificate is configured.

uvicorn handles SIGINT/SIGTERM: it stops accepting, lets open requests finish (up to the
reply timeout), closes WebSockets, then runs the app's lifespan shutdown.
"""

from __future__ import annotations

import logging
import math
from types import TracebackType

import uvicorn

from gateway.app import create_app
from gateway.settings import Settings

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._server: uvicorn.Server | None = None

    async def __aenter__(self) -> Gateway:
        s = self.settings
        config = uvicorn.Config(
            create_app(s),
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

    async def run(self) -> None:
        assert self._server is not None, "use 'async with Gateway(settings)'"
        scheme = "https" if self.settings.tls else "http"
        log.info("serving on %s://%s:%d", scheme, self.settings.host, self.settings.port)
        await self._server.serve()

    def stop(self) -> None:
        """Idempotent: ask uvicorn to drain and exit."""
        if self._server is not None:
            self._server.should_exit = True
