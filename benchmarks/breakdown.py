"""Scenario 3's "where the time goes" at concurrency 1: a REST classify taken apart.

A REST answer (``POST /v1/classify``) is the gateway's HTTP handling plus a Kafka round trip
through a worker (request produced -> worker -> prediction read back) plus what the gateway
does around it (validation, the publish, matching the reply). Each part is timed alone, one
request at a time, right after the REST runs and on the same stack; REST itself is timed again,
taking turns with the HTTP baseline and the peers, so that all see the same machine:

- ``http``: ``GET /healthz`` on the gateway's API port (the HTTP client, uvicorn, Starlette and
  the middleware, a JSON body; no Kafka);
- ``produce``: a ReviewRequest produced to the requests topic until the broker acknowledges it
  (``acks=all``, as the gateway sends);
- ``kafka``: the same request until its prediction is read back from the predictions topic (two
  produces, two fetches and the worker's batch: the gateway's wait without the gateway), cut in
  three by the prediction's own times (one clock: everything runs on this machine): ``to_worker``
  (submitted -> the worker picks its batch up: the request's produce and fetch), ``in_worker``
  (-> the prediction is built: decoding, the model, on the event loop for a batch of one, the
  reply) and ``back`` (-> read back here: the reply's produce and fetch);
- ``model``: preprocessing + ONNX Runtime for one review in process (the worker's share of
  ``kafka``);
- ``peers``: each running ``mlflow models serve``'s ``POST /invocations`` with the same reviews,
  taking turns with REST classify and ``GET /healthz`` (``TURN`` requests back to back each):
  the target (REST p50 within 1 ms of mlflow serve's) compared on one machine state, where runs
  one after the other drift by more than that on this VM. One request at a time alternating
  between targets would not do: a REST answer leaves work behind (the worker's reply
  acknowledged, the gateway's next fetch) that the next target's request would pay for.

The rest of the REST p50 (REST minus ``http`` minus ``kafka``) is the gateway's own work on a
classify: the body's validation, encoding the request, the publish call and the reply's match.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.clients import healthz_client, mlflow_client, rest_client
from benchmarks.load import Send
from benchmarks.streaming import reader_at_end
from contracts import (
    KafkaSettings,
    Prediction,
    RequestFailed,
    ReviewRequest,
    Source,
    decode_reply,
    encode,
)
from contracts.messages import utc_now
from inference import OnnxPredictor

TURN = 20
"""requests back to back per target before the next target's turn (``http_ms``)"""
REST, HEALTHZ = "REST classify", "GET /healthz"


@dataclass(frozen=True)
class Parts:
    """Median milliseconds of each part, one request at a time."""

    rest_ms: float
    http_ms: float
    produce_ms: float
    kafka_ms: float
    to_worker_ms: float
    in_worker_ms: float
    back_ms: float
    model_ms: float
    peers_ms: Mapping[str, float]
    """each peer's /invocations, by name, taking turns with ``rest_ms`` and ``http_ms``"""


@dataclass(frozen=True)
class Hops:
    """Median milliseconds of the Kafka round trip and its three legs."""

    produce_ms: float
    round_trip_ms: float
    to_worker_ms: float
    in_worker_ms: float
    back_ms: float


def _median_ms(seconds: Sequence[float]) -> float:
    return float(np.median(seconds)) * 1000


async def http_ms(
    base_url: str,
    texts: Sequence[str],
    requests: int,
    warmup: int,
    peers: Mapping[str, str],
) -> tuple[float, float, dict[str, float]]:
    """Medians of REST classify, ``GET /healthz`` and each peer's ``/invocations`` (by name:
    its base URL), one request at a time, in turns of ``TURN`` requests back to back per target
    with the same reviews: all see the same machine state, and each counted request follows
    its own target's last answer, as in a c=1 run (the first of a turn follows another
    target's: not counted)."""
    async with contextlib.AsyncExitStack() as clients:
        targets: dict[str, Send] = {
            REST: await clients.enter_async_context(rest_client(base_url)),
            HEALTHZ: await clients.enter_async_context(healthz_client(base_url)),
        }
        for name, url in peers.items():
            targets[name] = await clients.enter_async_context(mlflow_client(url))
        took: dict[str, list[float]] = {name: [] for name in targets}
        cycle = itertools.cycle(texts)
        warmup_turns = math.ceil(warmup / TURN)
        for turn in range(warmup_turns + math.ceil(requests / (TURN - 1))):
            reviews = list(itertools.islice(cycle, TURN))
            for name, send in targets.items():
                for i, text in enumerate(reviews):
                    started = time.perf_counter()
                    await send(text)
                    if turn >= warmup_turns and i > 0:
                        took[name].append(time.perf_counter() - started)
    medians = {name: _median_ms(seconds) for name, seconds in took.items()}
    return medians.pop(REST), medians.pop(HEALTHZ), medians


async def kafka_ms(kafka: KafkaSettings, texts: Sequence[str], requests: int, warmup: int) -> Hops:
    """Medians of sequential requests: produce acknowledged, prediction read back, and the
    round trip's legs by the prediction's times."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all", linger_ms=0)
    consumer, _ = await asyncio.gather(reader_at_end(kafka), producer.start())
    try:
        acked: list[float] = []
        answered: list[float] = []
        legs: list[tuple[float, float, float]] = []
        cycle = itertools.cycle(texts)
        for i in range(warmup + requests):
            request = ReviewRequest(text=next(cycle), source=Source.PRODUCER)
            key, value = request.request_id.encode(), encode(request)
            started = time.perf_counter()
            await producer.send_and_wait(kafka.requests_topic, value, key=key)
            ack = time.perf_counter()
            reply = await _read_until(consumer, key)
            read_at = utc_now()
            if i >= warmup:
                acked.append(ack - started)
                answered.append(time.perf_counter() - started)
                legs.append(_legs(decode_reply(reply), request, read_at))
        to_worker, in_worker, back = zip(*legs, strict=True)
        return Hops(
            _median_ms(acked), _median_ms(answered),
            _median_ms(to_worker), _median_ms(in_worker), _median_ms(back),
        )  # fmt: skip
    finally:
        await producer.stop()
        await consumer.stop()


async def _read_until(consumer: AIOKafkaConsumer, key: bytes) -> bytes | None:
    """The value of the record keyed ``key``."""
    async with asyncio.timeout(30):
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                for m in messages:
                    if m.key == key:
                        return m.value  # type: ignore[no-any-return]


def _legs(
    answer: Prediction | RequestFailed, request: ReviewRequest, read_at: datetime
) -> tuple[float, float, float]:
    """Seconds to the worker, in it and back, from the prediction's times."""
    if not isinstance(answer, Prediction):
        raise RuntimeError(f"request {request.request_id} failed: {answer.reason}")
    to_worker = answer.timings.queue_ms / 1000
    built = (answer.predicted_at - request.submitted_at).total_seconds()
    return to_worker, built - to_worker, (read_at - answer.predicted_at).total_seconds()


def model_ms(predictor: OnnxPredictor, texts: Sequence[str], requests: int) -> float:
    took: list[float] = []
    for text in itertools.islice(itertools.cycle(texts), requests):
        started = time.perf_counter()
        predictor.predict([text])
        took.append(time.perf_counter() - started)
    return _median_ms(took)


async def measure(
    *,
    gateway_url: str,
    kafka: KafkaSettings,
    predictor: OnnxPredictor,
    texts: Sequence[str],
    requests: int,
    peers: Mapping[str, str],
    warmup: int = 50,
) -> Parts:
    """``peers``: the base URLs of running ``mlflow models serve`` instances, by name."""
    hops = await kafka_ms(kafka, texts, requests, warmup)
    rest, http, peer_ms = await http_ms(gateway_url, texts, requests, warmup, peers)
    return Parts(
        rest_ms=rest,
        http_ms=http,
        produce_ms=hops.produce_ms,
        kafka_ms=hops.round_trip_ms,
        to_worker_ms=hops.to_worker_ms,
        in_worker_ms=hops.in_worker_ms,
        back_ms=hops.back_ms,
        model_ms=await asyncio.to_thread(model_ms, predictor, texts, requests),
        peers_ms=peer_ms,
    )
