"""The peer we compare with: ``mlflow models serve`` of the registered version itself.

Every registered version is an MLflow pyfunc model whose artifact is the bundle the workers
serve (same ONNX file, same preprocessing, same code), so the comparison measures the serving
stacks, not the models.

It runs twice: at its defaults (``mlflow models serve`` with no options: one uvicorn worker,
uvicorn's access log on), and tuned for this machine (:func:`tuned`: one worker per core,
access log off through uvicorn's own ``UVICORN_ACCESS_LOG``, since MLflow passes only host,
port and workers to the ``uvicorn`` it runs), so that our figures stand against its best too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def registered_uri(model_name: str, alias: str) -> str:
    """The version an alias names, as MLflow's tools take it."""
    return f"models:/{model_name}@{alias}"


@dataclass(frozen=True)
class PeerOptions:
    """How ``mlflow models serve`` runs: ``workers`` None is its default (1)."""

    label: str
    workers: int | None = None
    access_log: bool = True


DEFAULTS = PeerOptions("defaults")


def tuned() -> PeerOptions:
    cores = os.cpu_count() or 1
    return PeerOptions(f"tuned: {cores} workers, no access log", workers=cores, access_log=False)


@dataclass(frozen=True)
class Served:
    url: str
    pid: int


@contextmanager
def mlflow_serve(
    model_uri: str, port: int, tracking_uri: str, options: PeerOptions = DEFAULTS
) -> Iterator[Served]:
    """Run the real ``mlflow models serve`` command until the block ends."""
    workers = [] if options.workers is None else ["--workers", str(options.workers)]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        # mlflow execs `uvicorn` by name: put this environment's scripts first on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if not options.access_log:
        env["UVICORN_ACCESS_LOG"] = "false"
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), *workers],
        env=env,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("mlflow models serve did not answer /ping") from None
                time.sleep(0.5)
        yield Served(url, process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
