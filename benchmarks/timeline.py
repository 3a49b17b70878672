"""A hot reload's time line, read from the services' logs: when the watcher heard of the move,
when it published the event, when each worker swapped, all against the moment the bench moved
the alias. The services log on this machine with millisecond times (``runtime.process``), so
their clocks are the bench's; what no step metric times (MLflow's alias call and its webhook,
Kafka to the workers, the first answer after the swap) shows up between these marks."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def stamp(line: str) -> float | None:
    """The wall-clock time (s since the epoch) a service's log line was written, or None."""
    match = STAMP.match(line)
    if match is None:
        return None
    return time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000


def first(lines: Iterable[str], needle: str, after: float) -> float | None:
    """When the first line at or after ``after`` (less a millisecond's rounding) said
    ``needle``, or None."""
    for line in lines:
        when = stamp(line)
        if when is not None and when >= after - 0.001 and needle in line:
            return when
    return None


@dataclass(frozen=True)
class Marks:
    """Seconds from the alias move to each mark (None: not found in the logs)."""

    webhook: float | None
    published: float | None
    swapped: float | None  # the last worker

    @classmethod
    def read(
        cls, moved_at: float, watcher_log: str, worker_logs: list[str], model: str, version: str
    ) -> Marks:
        watcher = watcher_log.splitlines()
        webhook = first(
            watcher, f"webhook: {model}@production moved to version {version}", moved_at
        )
        published = first(watcher, f"{model}@production -> version {version} ", moved_at)
        swaps = [
            first(log.splitlines(), f"now serving {model} version {version} ", moved_at)
            for log in worker_logs
        ]
        swapped = None if None in swaps else max(s for s in swaps if s is not None)

        def since(when: float | None) -> float | None:
            return None if when is None else when - moved_at

        return cls(since(webhook), since(published), since(swapped))
