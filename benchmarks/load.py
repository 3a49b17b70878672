"""One closed-loop load generator for every online scenario, so comparisons are like for like.

``concurrency`` clients each send one review, wait for the answer, and send the next; a warm-up
is run first and not counted. Every request's latency is kept for percentiles.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Send = Callable[[str], Awaitable[None]]


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


async def closed_loop(
    send: Send,
    texts: Sequence[str],
    *,
    concurrency: int,
    requests: int,
    warmup: int = 0,
) -> LoadResult:
    """Send ``requests`` reviews (after ``warmup`` uncounted ones) from ``concurrency`` clients."""
    cycle = itertools.cycle(texts)

    async def run(total: int, result: LoadResult | None) -> None:
        remaining = iter(range(total))

        async def client() -> None:
            for _ in remaining:
                text = next(cycle)
                started = time.perf_counter()
                try:
                    await send(text)
                except Exception as exc:  # a failed request is a result, not a crash
                    if result is not None:
                        result.failures += 1
                        name = type(exc).__name__
                        result.errors[name] = result.errors.get(name, 0) + 1
                    continue
                if result is not None:
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(client() for _ in range(concurrency)))

    if warmup:
        await run(warmup, None)
    result = LoadResult(concurrency=concurrency, duration_s=0.0)
    started = time.perf_counter()
    await run(requests, result)
    result.duration_s = time.perf_counter() - started
    return result


def repeat_batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def cycled(texts: Sequence[str], count: int) -> list[str]:
    return list(itertools.islice(itertools.cycle(texts), count))
