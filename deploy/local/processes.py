"""Run a service (``python -m <package>``) as a child on the local stack, for tests and benchmarks.

``launcher`` starts the infrastructure; this starts one service on it: its own port (or the one
it logs), its log in a file, signals that are real signals to its process group (a crash is a
SIGKILL, not a polite stop), readiness from the service's own ``/readyz`` polled with a
deadline, never a sleep, and its /metrics read as numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from contracts.topics import KafkaSettings
from deploy.local.launcher import ROOT, free_port

# What runtime.health logs once it listens: the port of a service started on port 0.
PORT_LINE = re.compile(r"health and metrics on https?://[\d.]+:(\d+)")


def kafka_env(settings: KafkaSettings) -> dict[str, str]:
    """The RS_KAFKA_* variables that make a child process see ``settings``."""
    values = settings.model_dump()
    if settings.password is not None:  # dumped masked
        values["password"] = settings.password.get_secret_value()
    return {f"RS_KAFKA_{name.upper()}": str(v) for name, v in values.items() if v is not None}


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, every_s: float = 0.2
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s:.0f}s: {what}")
        await asyncio.sleep(every_s)


@dataclass(frozen=True)
class Reply:
    """What a service answered to a GET: an error status is an answer too."""

    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class ServiceProcess:
    """One ``python -m <package>`` child in a process group of its own, so that its signals are
    real ones and reach whatever it started. ``async with``: started, and killed at the end;
    :meth:`running`: started, ready, and stopped (SIGTERM, then SIGKILL) at the end.

    ``port`` None: the service binds port 0 and logs the one it got (:meth:`wait_port`).
    """

    def __init__(
        self,
        package: str,
        *,
        env: Mapping[str, str],
        log_path: Path,
        port: int | None = None,
        tls: bool = False,
        python_args: Sequence[str] = (),
        cwd: Path = ROOT,
    ) -> None:
        self.package = package
        self.cwd = cwd  # `python -m` imports the packages of this checkout
        self.port = port
        self.log_path = log_path
        self.tls = tls
        self.command = [sys.executable, *python_args, "-m", package]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.package} has not logged its port yet (wait_port)")
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.kill()

    @contextlib.asynccontextmanager
    async def running(
        self, *, ready: str = "/readyz", timeout_s: float = 90
    ) -> AsyncIterator[Self]:
        """Started and answering 200 on ``ready``; stopped at the end, whatever happened."""
        self.start()
        try:
            await self.wait_ready(timeout_s, path=ready)
            yield self
        finally:
            self.stop()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, sig: signal.Signals) -> None:
        """``sig`` to the child's process group; nothing once the child has exited."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL: no drain, no last commit, exactly what a crash leaves behind."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, and the exit code once it has drained and stopped."""
        assert self.process is not None
        self.signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM; SIGKILL if it has not stopped within ``timeout_s``."""
        try:
            self.terminate(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_exit(self, timeout_s: float = 60) -> int:
        """The exit status once it has exited (minus the number of a signal that ended it)."""
        process = self.process
        assert process is not None

        async def exited() -> bool:
            return process.poll() is not None

        await wait_for(exited, timeout_s=timeout_s, what=f"{self.package} exits")
        return process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _still_running(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.package} exited early:\n{self.log()[-4000:]}")

    async def wait_port(self, timeout_s: float = 90) -> int:
        """The port, from the service's log line once it has bound one."""

        async def said() -> bool:
            self._still_running()
            found = PORT_LINE.search(self.log())
            if found:
                self.port = int(found.group(1))
            return self.port is not None

        await wait_for(said, timeout_s=timeout_s, what=f"{self.package} logs its port")
        assert self.port is not None
        return self.port

    async def wait_ready(self, timeout_s: float = 90, *, path: str = "/readyz") -> None:
        """Until ``path`` answers 200 (``/healthz``: up, whatever its dependencies say), and
        names no degraded part: the local stack waits for its optional dependencies too."""
        if self.port is None:
            await self.wait_port(timeout_s)

        async def ready() -> bool:
            self._still_running()
            try:
                reply = await self.get(path)
            except (aiohttp.ClientError, OSError, TimeoutError):  # not listening yet
                return False
            return reply.status == 200 and '"degraded"' not in reply.text

        try:
            await wait_for(ready, timeout_s=timeout_s, what=f"{self.package} answers {path}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}:\n{self.log()[-4000:]}") from None

    async def get(self, path: str) -> Reply:
        if self.port is None:
            await self.wait_port()
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            # ssl=False: the certificate is for the test to check, not for the harness
            http.get(f"{self.url}{path}", ssl=False) as response,
        ):
            return Reply(response.status, await response.text())

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        text = (await self.get("/metrics")).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        samples = await self.metrics()
        return sum(
            (v for (n, have), v in samples.items() if n == name and labels.items() <= set(have)),
            0.0,
        )


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
        cwd: Path = ROOT,
    ) -> None:
        port = free_port()
        super().__init__(
            "stats",
            port=port,
            log_path=log_path,
            cwd=cwd,
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
