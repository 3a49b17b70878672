"""Run a service (``python -m <package>``) as a child on the local stack, for tests and benchmarks.

``launcher`` starts the infrastructure; this starts one service on it: its own port, its log in
a file, kills that are real kills (a crash is a SIGKILL, not a polite stop), and readiness from
the service's own ``/readyz``, polled with a deadline, never a sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Self

from contracts.topics import KafkaSettings
from deploy.local.launcher import ROOT, free_port


def kafka_env(settings: KafkaSettings) -> dict[str, str]:
    """The RS_KAFKA_* variables that make a child process see ``settings``."""
    return {f"RS_KAFKA_{name.upper()}": str(value) for name, value in settings.model_dump().items()}


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, every_s: float = 0.2
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s:.0f}s: {what}")
        await asyncio.sleep(every_s)


class ServiceProcess:
    """One ``python -m <package>`` child. Use as ``async with``: it is always killed at the end."""

    def __init__(self, package: str, *, port: int, env: Mapping[str, str], log_path: Path) -> None:
        self.package = package
        self.port = port
        self.log_path = log_path
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.kill()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.package],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no drain, no last commit, exactly what a crash leaves behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, and the exit code once it has drained and stopped."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout_s: float = 90) -> None:
        async def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.package} exited early:\n{self.log()[-4000:]}")
            return await asyncio.to_thread(self._answers_ready)

        await wait_for(ready, timeout_s=timeout_s, what=f"{self.package} answers /readyz")

    def _answers_ready(self) -> bool:
        url = f"{self.url}/readyz"  # always http://127.0.0.1:port, built here
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):  # not listening yet, or 503: not ready
            return False


class StatsProcess(ServiceProcess):
    """The stats processor on the caller's Kafka topics and database, in its own consumer group."""

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        database_url: str,
        group_id: str,
        log_path: Path,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        port = free_port()
        super().__init__(
            "stats",
            port=port,
            log_path=log_path,
            env={
                **kafka_env(kafka),
                "DATABASE_URL": database_url,
                "RS_STATS_HOST": "127.0.0.1",
                "RS_STATS_PORT": str(port),
                "RS_STATS_GROUP_ID": group_id,
                "RS_STATS_DATA_DIR": str(log_path.parent / f"{log_path.stem}-data"),
                **(extra_env or {}),
            },
        )
        self.group_id = group_id
