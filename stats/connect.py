"""One connection to PostgreSQL for a part that may start before the server answers: the
one-shot jobs (``python -m stats.roles``, ``python -m stats.migrate``: compose's init-job, the
Kubernetes init Job) and the local stack waiting for its own server.

A container network's name service may not resolve a name for a moment (podman's aardvark-dns
while it reloads, a Service whose endpoints are not ready) and a starting server refuses
connections: both are retried for a while. A wrong password or database name is not: it fails
at once with PostgreSQL's own message.
"""

from __future__ import annotations

import logging

import asyncpg
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay

from runtime.backoff import backoff

log = logging.getLogger(__name__)

TRANSIENT = (OSError, asyncpg.CannotConnectNowError)
"""name not resolved, connection refused or timed out, the server still starting"""


async def connect(url: str, *, timeout_s: float = 120, cap_s: float = 2) -> asyncpg.Connection:
    """A connection to ``url``, retrying transient failures for ``timeout_s`` (waits back off
    from 0.2 s to ``cap_s``); the last failure is raised when the time is up."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(timeout_s),
        wait=backoff(cap_s),
        retry=retry_if_exception_type(TRANSIENT),
        before_sleep=_log_retry,
        reraise=True,
    ):
        with attempt:
            conn: asyncpg.Connection = await asyncpg.connect(url, timeout=5)
            return conn
    raise AssertionError("tenacity either returns or raises")  # pragma: no cover


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("PostgreSQL not reachable yet (%r); retrying", error)
