"""The Kafka nodes of a three-broker local stack as processes, for the tests and benchmarks
that kill one under load (Linux: the JVMs are found in /proc).

A node is found by the properties file on its command line (``<state>/kafka/node-<id>/``), is
killed with SIGKILL (a crash: no controlled shutdown, no leadership handed over), and is started
again with the command line it had, as a child of the caller, stopped by :meth:`close`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import KafkaSettings
from deploy.local.launcher import ROOT, LocalStack

PROC = Path("/proc")


def command_line(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:  # gone, or not ours to read
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass
class KafkaNodes:
    stack: LocalStack
    commands: dict[int, list[str]] = field(default_factory=dict)
    restarted: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def properties(self, node: int) -> str:
        return str(self.stack.state_dir.resolve() / "kafka" / f"node-{node}" / "server.properties")

    def pid(self, node: int) -> int | None:
        """The JVM of ``node`` now running, if any."""
        wanted = self.properties(node)
        for entry in PROC.iterdir():
            if entry.name.isdigit():
                line = command_line(int(entry.name))
                if "kafka.Kafka" in line and line[-1] == wanted:
                    return int(entry.name)
        return None

    def kill(self, node: int) -> None:
        """SIGKILL the node's JVM and wait until it is gone; its command line is kept."""
        pid = self.pid(node)
        if pid is None:
            raise LookupError(f"Kafka node {node} is not running")
        self.commands[node] = command_line(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (PROC / str(pid)).exists() and command_line(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka node {node} (pid {pid}) outlived SIGKILL")
            time.sleep(0.05)

    def restart(self, node: int) -> None:
        """Start a killed node again, on its storage (it catches up as a follower)."""
        log = self.stack.state_dir.parent / f"{self.stack.state_dir.name}-kafka-{node}.log"
        with log.open("ab") as out:
            self.restarted[node] = subprocess.Popen(
                self.commands[node], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def close(self) -> None:
        """Stop the nodes this started (the stack stops its own)."""
        for process in self.restarted.values():
            if process.poll() is None:
                process.terminate()
        for process in self.restarted.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def leaders(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """Partition -> the id of the broker that leads it."""
    described = await _describe(kafka, topic)
    return {p["partition"]: p["leader"] for p in described["partitions"]}


async def in_sync(kafka: KafkaSettings, topic: str) -> dict[int, set[int]]:
    """Partition -> the ids of its in-sync replicas."""
    described = await _describe(kafka, topic)
    return {p["partition"]: set(p["isr"]) for p in described["partitions"]}


async def _describe(kafka: KafkaSettings, topic: str) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(**kafka.client(), request_timeout_ms=10_000)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return dict(described)
    finally:
        await admin.close()


async def busiest_leader(kafka: KafkaSettings, topics: list[str]) -> int:
    """The broker leading the most partitions of ``topics``: the one whose death hurts most."""
    counts: dict[int, int] = {}
    for found in await asyncio.gather(*(leaders(kafka, topic) for topic in topics)):
        for leader in found.values():
            counts[leader] = counts.get(leader, 0) + 1
    return max(sorted(counts), key=lambda node: counts[node])
