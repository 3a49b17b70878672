"""Background tasks that cannot die quietly.

A service's side tasks (reading replies, polling statistics, following models) run for the
life of the process. :class:`Supervisor` starts them; one that ends with an error is logged
with its traceback, counted (``rs_<service>_background_task_failures_total``), and named by
:attr:`Supervisor.failed`, which the service's readiness reports, so an orchestrator replaces
a process whose live panel froze instead of serving it on. :meth:`Supervisor.stop` cancels them
and waits for them to end: one task (a component that stops) or all (the service that stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed: list[str] = []
        self._failures = Counter(
            f"rs_{service}_background_task_failures",
            "Background tasks that ended with an error (the service is then not ready)",
            ["task"],
            registry=registry,
        )

    @property
    def failed(self) -> list[str]:
        """The names of the tasks that died: readiness fails while there is any."""
        return list(self._failed)

    def start(self, coroutine: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        name = task.get_name()
        log.error("background task %s died", name, exc_info=error)
        self._failures.labels(name).inc()
        self._failed.append(name)

    async def stop(self, *tasks: asyncio.Task[Any]) -> None:
        """Cancel ``tasks`` (all it started, if none is named) and wait for them to end.

        Idempotent; an error a task ended with was logged and counted when it ended, so
        stopping never raises it again.
        """
        tasks = tasks or tuple(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
