"""Start-up and shutdown of every service process, in one place.

A service is an async context manager with ``run()`` (until it is done or stopped) and an
idempotent ``stop()``. :func:`serve` does the rest the same way for all: logging set-up (one
format, ``LOG_LEVEL``; chatty libraries at WARNING; no client errors while a dependency is
awaited at start-up), environment defaults, MLflow's password from its file
(:mod:`runtime.mlflow_credentials`), the event loop (uvloop unless the service needs
the plain one), SIGTERM and SIGINT to ``stop()``, and exit status 1 with one ERROR line when the
service gives up for good (:class:`ServiceFailed`). So each ``__main__`` is a few lines::

    serve(lambda: Worker(Settings()), name="workers")
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import uvloop

from runtime.mlflow_credentials import CredentialError, load_password_file
from runtime.startup import quiet_probes

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Service(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


class ServiceFailed(Exception):
    """The service stopped for good (say why): the process exits with status 1."""


def configure_logging(quiet: Iterable[str] = ("aiokafka",)) -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format=LOG_FORMAT)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet_probes()


def serve(
    make: Callable[[], AbstractAsyncContextManager[Service]],
    *,
    name: str,
    quiet: Iterable[str] = ("aiokafka",),
    environ: Mapping[str, str] | None = None,
    use_uvloop: bool = True,
) -> None:
    """Run the service made by ``make()`` (inside the event loop) until it ends."""
    configure_logging(quiet)
    for key, value in (environ or {}).items():
        os.environ.setdefault(key, value)
    try:
        load_password_file()  # MLflow's password, from a mounted Secret (a no-op without one)
    except CredentialError as exc:
        logging.getLogger(name).error("cannot start: %s", exc)
        sys.exit(2)
    try:
        if use_uvloop:
            uvloop.run(_run(make))
        else:
            asyncio.run(_run(make))
    except ServiceFailed as exc:
        logging.getLogger(name).error("stopped after a failure: %s", exc)
        sys.exit(1)


async def _run(make: Callable[[], AbstractAsyncContextManager[Service]]) -> None:
    async with make() as service:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service.stop)
        await service.run()
