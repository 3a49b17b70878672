"""One connection to PostgreSQL for a part that may start before the server answers: the
one-shot jobs (``python -m stats.roles``, ``python -m stats.migrate``: compose's init-job, the
Kubernetes init Job) and the local stack waiting for its own server.

A container network's name service may not resolve a name for a moment (podman's aardvark-dns
while it reloads, a Service whose endpoints are not ready) and a starting server refuses
connections: both are waited for (:func:`runtime.startup.wait_for`, as the services wait). A
wrong password or database name is not: it fails at once with PostgreSQL's own message.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import asyncpg

from runtime.startup import wait_for

log = logging.getLogger(__name__)

TRANSIENT = (OSError, asyncpg.CannotConnectNowError)
"""name not resolved, connection refused or timed out, the server still starting"""


async def connect(url: str, *, timeout_s: float = 120, cap_s: float = 2) -> asyncpg.Connection:
    """A connection to ``url``, waiting out transient failures for ``timeout_s`` (waits back
    off from 0.2 s to ``cap_s``); then one last try, whose failure is raised."""
    connected: list[asyncpg.Connection] = []

    async def probe() -> None:
        connected.append(await asyncpg.connect(url, timeout=5))

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    if await wait_for(
        "PostgreSQL",
        f"{parts.hostname}:{parts.port or 5432}",
        probe,
        log=log,
        retry_on=TRANSIENT,
        max_backoff_s=cap_s,
        give_up=lambda: time.monotonic() >= deadline,
    ):
        return connected[0]
    conn: asyncpg.Connection = await asyncpg.connect(url, timeout=5)
    return conn
