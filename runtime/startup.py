"""Waiting for a dependency at start-up: one INFO line when the wait begins, one when it ends.

Services start in any order, so Kafka, PostgreSQL or MLflow may not answer yet when a service
starts: expected, not an error. :func:`wait_for` says "waiting for Kafka at ..." once, probes
again with capped exponential backoff (tenacity), and says "connected to Kafka at ..." when the
probe passes. A long wait is not silent: every ``remind_every_s`` it says so again, at WARNING,
with the last reason.

Client libraries log their own failures while a probe fails (aiokafka logs each refused
connection at ERROR). :class:`QuietProbes`, a logging filter that ``__main__`` installs with
:func:`quiet_probes`, drops what those libraries log from *inside* a probe, and nothing else:
a probe's clients are closed when it returns, and clients started after the wait log their
failures as before, so a real failure after start-up is still an ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from runtime.backoff import backoff

Probe = Callable[[], Awaitable[object]]

# Set while a probe runs. Tasks a probe's client starts copy it, and end with that client.
_probing: ContextVar[bool] = ContextVar("rs_probing", default=False)


class NotYet(Exception):
    """The dependency answers but cannot serve us yet (a topic not created, no coordinator)."""


class QuietProbes(logging.Filter):
    """Drops the records of ``libraries`` (logger names and their children) logged in a probe."""

    def __init__(self, *libraries: str) -> None:
        super().__init__()
        self._libraries = libraries

    def filter(self, record: logging.LogRecord) -> bool:
        if not _probing.get():
            return True
        name = record.name
        return not any(name == lib or name.startswith(f"{lib}.") for lib in self._libraries)


def quiet_probes(*libraries: str) -> None:
    """Install :class:`QuietProbes` on the root logger's handlers (after ``basicConfig``)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietProbes(*(libraries or ("aiokafka",))))


def http_ok(url: str, *, timeout_s: float = 5.0) -> Probe:
    """A probe that passes when ``url`` (http or https) answers a GET with a 2xx."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")

    def get() -> None:
        # The scheme is checked above: no file: or custom scheme reaches urlopen.
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:  # noqa: S310
            reply.read()

    return lambda: asyncio.to_thread(get)


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    name = type(exc).__name__
    text = str(exc) or name
    if not isinstance(exc, NotYet) and not text.startswith(name):
        text = f"{name}: {text}"
    return text if len(text) <= 200 else f"{text[:197]}..."


async def wait_for(
    what: str,
    where: str,
    probe: Probe,
    *,
    log: logging.Logger,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    max_backoff_s: float = 2.0,
    remind_every_s: float = 60.0,
    give_up: Callable[[], bool] | None = None,
    level: int = logging.INFO,
) -> bool:
    """Probe until it passes (True), or until ``give_up()`` holds between attempts (False).

    ``level`` is that of the two lines ("waiting for", "connected to"): DEBUG where another
    part of the same process already says them (then reminders are DEBUG too). An exception
    outside ``retry_on`` propagates.
    """
    started = time.monotonic()
    said_at: float | None = None

    def before_sleep(state: RetryCallState) -> None:
        nonlocal said_at
        reason = _reason(state.outcome.exception() if state.outcome else None)
        now = time.monotonic()
        if said_at is None:
            log.log(level, "waiting for %s at %s (%s)", what, where, reason)
            said_at = now
        elif now - said_at >= remind_every_s:
            log.log(
                logging.WARNING if level >= logging.INFO else level,
                "still waiting for %s at %s after %.0f s (%s)",
                what,
                where,
                now - started,
                reason,
            )
            said_at = now
        else:
            log.debug("%s at %s: %s (attempt %d)", what, where, reason, state.attempt_number)

    def stop(state: RetryCallState) -> bool:
        return give_up is not None and give_up()

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(retry_on),
            wait=backoff(max_backoff_s),
            stop=stop,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                token = _probing.set(True)
                try:
                    await probe()
                finally:
                    _probing.reset(token)
    except retry_on:
        return False  # give_up() said stop; the last failure is no news
    waited = time.monotonic() - started
    if said_at is None:
        log.log(level, "connected to %s at %s", what, where)
    else:
        log.log(level, "connected to %s at %s (after %.1f s)", what, where, waited)
    return True
