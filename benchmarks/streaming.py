"""Scenario 2's measurement: a burst of ReviewRequests published at once to the requests topic,
and the time until every one of their predictions has been read back.

The requests are built and encoded before the clock starts, and the reader matches predictions
by their key (the request id) without decoding them, so the client costs as little CPU as it
can: it shares the machine with the broker and the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import KafkaSettings, ReviewRequest, Source, decode_reply, encode


@dataclass
class Burst:
    sent: int
    answered: int
    seconds: float  # first send -> last prediction read
    worker_ids: set[str]

    @property
    def throughput(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else float("nan")


async def reader_at_end(kafka: KafkaSettings) -> AIOKafkaConsumer:
    """A started consumer of the predictions topic (no group) at its end: it reads only what
    is answered from now on."""
    consumer = AIOKafkaConsumer(
        kafka.predictions_topic,
        **kafka.client(),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 2**20,
    )
    await consumer.start()
    await consumer.seek_to_end()
    for tp in consumer.assignment():  # resolve the end offsets now, before anything is sent
        await consumer.position(tp)
    return consumer


async def burst(
    kafka: KafkaSettings, texts: Sequence[str], *, timeout_s: float, decode_workers: bool = False
) -> Burst:
    """Publish one request per text and wait (up to ``timeout_s``) for every prediction."""
    requests = [ReviewRequest(text=t, source=Source.PRODUCER) for t in texts]
    payloads = [(r.request_id.encode(), encode(r)) for r in requests]
    pending = {key for key, _ in payloads}
    worker_ids: set[str] = set()
    consumer = await reader_at_end(kafka)
    producer = AIOKafkaProducer(**kafka.client(), acks="all", linger_ms=5, max_batch_size=2**18)
    await producer.start()
    last = started = time.perf_counter()
    try:

        async def read() -> None:
            nonlocal last
            while pending:
                batches = await consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for message in messages:
                        if message.key in pending:
                            pending.discard(message.key)
                            last = time.perf_counter()
                            if decode_workers and message.value is not None:
                                worker_ids.add(decode_reply(message.value).worker_id)

        reading = asyncio.create_task(read())
        started = time.perf_counter()
        acks = [
            await producer.send(kafka.requests_topic, value, key=key) for key, value in payloads
        ]
        await asyncio.gather(*acks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reading, timeout_s)
    finally:
        await producer.stop()
        await consumer.stop()
    return Burst(len(payloads), len(payloads) - len(pending), last - started, worker_ids)
