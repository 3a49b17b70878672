"""/healthz, /readyz and /metrics on faust's web server (bound to RS_STATS_HOST:RS_STATS_PORT)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stats.metrics import Metrics


def add_pages(
    app: faust.App, metrics: Metrics, readiness: Callable[[], Awaitable[dict[str, bool]]]
) -> None:
    """``readiness`` answers each dependency's state; ready means all of them are."""

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        checks = await readiness()
        ready = all(checks.values())
        return web.json(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(
            generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
