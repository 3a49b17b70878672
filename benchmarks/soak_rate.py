"""The soak's default rate: half of what the stack answers when the soak's two paths are pushed
as hard as they go, at once, on the same machine.

The 2-worker burst (scenario 2) keeps only the workers and the broker busy. The soak also runs
the gateway, PostgreSQL, the stats processor and its own load generator on the same cores, so
half the burst can be more than the machine sustains (on 2 cores it was: the soak of 2026-12-03
07:11 had the gateway refuse 6.7% of its REST requests). Here, for a few seconds, closed-loop
clients keep ``kafka_in_flight`` requests waiting on the requests topic and ``rest_concurrency``
on the gateway's REST classify; what each path answers per second is its maximum beside the
other. The stats processor is not running yet (it counts the soak's predictions only), so the
maximum is a little above what the soak's mix can reach.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from benchmarks.clients import kafka_client, rest_client
from benchmarks.load import LoadResult, Send, closed_loop
from contracts import KafkaSettings

KAFKA_IN_FLIGHT = 512  # requests waiting on the topic: both workers' batches stay full


@dataclass(frozen=True)
class MixMaximum:
    kafka: LoadResult
    rest: LoadResult


async def mix_maximum(
    kafka: KafkaSettings,
    gateway_url: str,
    texts: Sequence[str],
    *,
    seconds: float,
    rest_concurrency: int,
    kafka_in_flight: int = KAFKA_IN_FLIGHT,
) -> MixMaximum:
    """Both paths closed-loop at once for ``seconds``, a warm-up of one request per client
    first (not counted, inside the ``seconds``)."""
    async with kafka_client(kafka) as to_kafka, rest_client(gateway_url) as to_rest:
        stop = asyncio.Event()

        def push(send: Send, concurrency: int) -> Awaitable[LoadResult]:
            return closed_loop(send, texts, concurrency=concurrency, stop=stop, warmup=concurrency)

        timer = asyncio.get_running_loop().call_later(seconds, stop.set)
        try:
            kafka_run, rest_run = await asyncio.gather(
                push(to_kafka, kafka_in_flight), push(to_rest, rest_concurrency)
            )
        finally:
            timer.cancel()
    return MixMaximum(kafka_run, rest_run)
