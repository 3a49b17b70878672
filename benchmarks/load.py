"""One closed-loop load generator for every online scenario, so comparisons are like for like.

``concurrency`` clients each send one review, wait for the answer, and send the next; a warm-up
is run first and not counted. Every request's latency is kept for percentiles. A run ends after
a fixed number of requests, or when a ``stop`` event is set (steady load for the hot reload).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Send = Callable[[str], Awaitable[Any]]
"""Sends one review and returns the answer (anything); raises when the request failed."""
OnAnswer = Callable[[float, float, Any], None]
"""``on_answer(finished_at, latency_s, answer)``, with ``time.perf_counter`` times."""


@dataclass
class LoadResult:
    concurrency: int
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.duration_s if self.duration_s else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def slower_than(self, ms: float) -> int:
        return sum(1 for latency in self.latencies_ms if latency > ms)


async def _clients(
    send: Send,
    cycle: Iterator[str],
    tickets: Iterator[int],
    concurrency: int,
    result: LoadResult | None,
    on_answer: OnAnswer | None,
) -> None:
    async def client() -> None:
        for _ in tickets:
            text = next(cycle)
            started = time.perf_counter()
            try:
                answer = await send(text)
            except Exception as exc:  # a failed request is a result, not a crash
                if result is not None:
                    result.failures += 1
                    name = type(exc).__name__
                    result.errors[name] = result.errors.get(name, 0) + 1
                continue
            finished = time.perf_counter()
            if result is not None:
                result.latencies_ms.append((finished - started) * 1000)
            if on_answer is not None:
                on_answer(finished, finished - started, answer)

    await asyncio.gather(*(client() for _ in range(concurrency)))


def _until(stop: asyncio.Event) -> Iterator[int]:
    for i in itertools.count():
        if stop.is_set():
            return
        yield i


async def closed_loop(
    send: Send,
    texts: Sequence[str],
    *,
    concurrency: int,
    requests: int | None = None,
    stop: asyncio.Event | None = None,
    warmup: int = 0,
    on_answer: OnAnswer | None = None,
) -> LoadResult:
    """Send ``requests`` reviews, or until ``stop`` is set, after ``warmup`` uncounted ones."""
    if (requests is None) == (stop is None):
        raise ValueError("give either requests or stop")
    cycle = itertools.cycle(texts)
    if warmup:
        await _clients(send, cycle, iter(range(warmup)), concurrency, None, None)
    result = LoadResult(concurrency=concurrency, duration_s=0.0)
    tickets = iter(range(requests)) if requests is not None else _until(stop)  # type: ignore[arg-type]
    started = time.perf_counter()
    await _clients(send, cycle, tickets, concurrency, result, on_answer)
    result.duration_s = time.perf_counter() - started
    return result


def repeat_batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def cycled(texts: Sequence[str], count: int) -> list[str]:
    return list(itertools.islice(itertools.cycle(texts), count))
