"""What the container smoke tests share: their command-line options, steps printed with their
times, and a failure report that names each container and shows its last log lines."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

LOG_LINES = 30

# The options both smoke tests take from the Makefile.
Registry = Annotated[str, typer.Option(help="where `make images` tagged the images")]
Tag = Annotated[str, typer.Option(help="their tag (the project's version)")]
KafkaImage = Annotated[str, typer.Option(help="a Kafka image (apache/kafka's contract)")]
PostgresImage = Annotated[str, typer.Option(help="a PostgreSQL image (postgres' contract)")]
DataDir = Annotated[Path, typer.Option(help="shared/data, for the training runs")]


class SmokeFailed(Exception):
    """A step's check did not hold."""


def podman(*args: str) -> str:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def show_logs(container: str, title: str) -> None:
    """``title``, then the container's last log lines."""
    print(f"--- {title}; last {LOG_LINES} log lines", flush=True)
    logs = subprocess.run(
        ["podman", "logs", "--tail", str(LOG_LINES), container], capture_output=True, text=True
    )
    print(logs.stdout + logs.stderr, flush=True)


class Steps:
    """Each step printed as it starts and ends, with its time; a summary at the end."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.times: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"[{time.monotonic() - self.started:6.1f}s] {name} ...", flush=True)
        began = time.monotonic()
        yield
        took = time.monotonic() - began
        self.times.append((name, took))
        print(f"[{time.monotonic() - self.started:6.1f}s] {name}: ok ({took:.1f} s)", flush=True)

    def summary(self, title: str) -> None:
        print(f"\n{title}; seconds per step:")
        for name, took in self.times:
            print(f"  {took:7.1f}  {name}")
        print(f"  {time.monotonic() - self.started:7.1f}  in all", flush=True)
