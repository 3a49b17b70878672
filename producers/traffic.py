"""Requests out, predictions back: one run's exchange with Kafka.

``Traffic`` owns one producer and, when answers are awaited, one listener on the predictions
topic and the requests topic's dead-letter topic. The listener is positioned at the end of
both *before* the first request is sent, so no answer can be missed, and matches what it reads
by request_id against the requests still pending; anything else on those topics is not ours.

Every send is produced with acks="all" and its delivery is awaited (at most ``max_in_flight``
at a time): a record counts as sent only once the broker has it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from contracts import (
    DeadLetter,
    DecodeError,
    Feedback,
    KafkaSettings,
    Prediction,
    RequestFailed,
    ReviewRequest,
    decode,
    decode_reply,
    encode,
)
from producers import kafka
from producers.errors import KafkaUnavailable
from producers.report import Report
from producers.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
OnAnswer = Callable[[Prediction, T], None]


class Traffic(Generic[T]):
    def __init__(
        self,
        settings: Settings,
        report: Report,
        *,
        wait: bool,
        on_answer: OnAnswer[T] | None = None,
        on_done: Callable[[int], None] | None = None,
        send_to: str | None = None,
        feedback: bool = False,
    ) -> None:
        self._settings = settings
        self._report = report
        self._wait = wait
        self._on_answer = on_answer
        self._on_done = on_done or (lambda n: None)
        self._requests_topic = send_to or settings.kafka.requests_topic
        self._feedback = feedback
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._listener: asyncio.Task[None] | None = None
        self._window = asyncio.Semaphore(settings.max_in_flight)
        self._deliveries: set[asyncio.Future[bool]] = set()
        self._pending: dict[str, T] = {}
        self._progress = asyncio.Event()
        self._last_progress = time.monotonic()

    async def __aenter__(self) -> Traffic[T]:
        k = self._settings.kafka
        topics = [self._requests_topic]
        if self._feedback:
            topics.append(k.feedback_topic)
        if self._wait:
            topics.append(k.predictions_topic)
        dlq = k.dlq(self._requests_topic)  # where workers put the requests they reject
        partitions = await kafka.topic_partitions(self._settings, [*topics, dlq], required=topics)
        producer = kafka.new_producer(self._settings)
        await kafka.start(producer, k.bootstrap_servers)
        self._producer = producer
        if self._wait:
            try:
                if dlq not in partitions:
                    log.warning("topic %s does not exist: rejections will show as time-outs", dlq)
                await self._listen_from_now(k, partitions, [k.predictions_topic, dlq])
            except BaseException:
                await self.__aexit__()
                raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._listener is not None:
                self._listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._listener
        finally:
            try:
                if self._consumer is not None:
                    await self._consumer.stop()
            finally:
                if self._producer is not None:
                    await self._producer.stop()

    async def _listen_from_now(
        self, k: KafkaSettings, partitions: dict[str, list[int]], topics: list[str]
    ) -> None:
        consumer = kafka.new_consumer(self._settings)
        self._consumer = consumer
        await kafka.start(consumer, k.bootstrap_servers)
        tps = [TopicPartition(t, p) for t in topics for p in partitions.get(t, [])]
        consumer.assign(tps)
        for tp, offset in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, offset)
        for tp in tps:  # resolve the positions now, before anything is sent
            await consumer.position(tp)
        self._listener = asyncio.create_task(self._listen(consumer, k), name="listener")

    async def request(self, request: ReviewRequest, tag: T) -> asyncio.Future[bool]:
        """Send one request; the future answers whether the broker took it."""
        if self._wait:
            self._pending[request.request_id] = tag  # before sending: the answer may be quick
        delivered = await self._send(
            self._requests_topic, request.request_id, encode(request), self._request_delivered
        )
        self._report.note_send(time.monotonic())
        return delivered

    async def feedback(self, feedback: Feedback) -> asyncio.Future[bool]:
        key = feedback.request_id or feedback.feedback_id
        return await self._send(
            self._settings.kafka.feedback_topic, key, encode(feedback), self._feedback_delivered
        )

    async def drain(self, answer_timeout_s: float, stop: asyncio.Event | None = None) -> None:
        """Await every delivery; then, when waiting, the answers, until none has come for
        ``answer_timeout_s`` or ``stop`` is set. What is still pending then counts as timed
        out, or as not awaited when stopped."""
        if self._deliveries:
            await asyncio.gather(*self._deliveries)
        if not self._wait:
            return
        stop = stop or asyncio.Event()
        self._last_progress = max(self._last_progress, self._report.last_send_s or 0.0)
        while self._pending and not stop.is_set():
            remaining = self._last_progress + answer_timeout_s - time.monotonic()
            if remaining <= 0:
                break
            self._progress.clear()
            await _first_of(self._progress, stop, seconds=remaining)
            if self._listener is not None and self._listener.done():
                self._listener.result()  # the listener died: say why
        if self._pending:
            left = len(self._pending)
            if stop.is_set():
                self._report.unanswered += left
            else:
                self._report.timed_out += left
                log.warning("%d request(s) got no answer within %g s", left, answer_timeout_s)
            self._pending.clear()
            self._on_done(left)

    async def _send(
        self,
        topic: str,
        key: str,
        value: bytes,
        on_delivered: Callable[[str, asyncio.Future[bool], asyncio.Future[object]], None],
    ) -> asyncio.Future[bool]:
        assert self._producer is not None, "use Traffic as an async context manager"
        await self._window.acquire()
        delivered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        try:
            sent = await self._producer.send(topic, value=value, key=key.encode())
        except KafkaError as exc:
            self._window.release()
            raise KafkaUnavailable(f"cannot send to {topic}: {kafka.describe(exc)}") from None
        self._deliveries.add(delivered)
        delivered.add_done_callback(self._deliveries.discard)
        sent.add_done_callback(lambda result: on_delivered(key, delivered, result))
        return delivered

    def _request_delivered(
        self, key: str, delivered: asyncio.Future[bool], result: asyncio.Future[object]
    ) -> None:
        self._window.release()
        error = _failure(result)
        if error is None:
            self._report.sent += 1
            if not self._wait:
                self._on_done(1)
        else:
            self._report.send_failed += 1
            log.error("request %s was not delivered: %s", key, error)
            if not self._wait or self._pending.pop(key, None) is not None:
                self._on_done(1)
        if not delivered.done():
            delivered.set_result(error is None)

    def _feedback_delivered(
        self, key: str, delivered: asyncio.Future[bool], result: asyncio.Future[object]
    ) -> None:
        self._window.release()
        error = _failure(result)
        if error is None:
            self._report.feedback_sent += 1
        else:
            self._report.feedback_failed += 1
            log.error("feedback for %s was not delivered: %s", key, error)
        if not delivered.done():
            delivered.set_result(error is None)

    async def _listen(self, consumer: AIOKafkaConsumer, k: KafkaSettings) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if tp.topic == k.predictions_topic:
                        self._on_prediction(record)
                    else:
                        self._on_dead_letter(record)

    def _on_prediction(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is not None and record.key.decode(errors="replace") not in self._pending:
            return  # keyed by request_id: not one of ours (or a duplicate answer)
        try:
            prediction = decode_reply(record.value)
        except DecodeError:
            return  # a broken record on a shared topic is its producer's business
        tag = self._pending.pop(prediction.request_id, None)
        if tag is None:
            return
        if isinstance(prediction, RequestFailed):  # the worker's error reply, before its DLQ record
            self._report.rejected += 1
            log.warning("request %s was rejected: %s", prediction.request_id, prediction.reason)
            self._made_progress()
            return
        self._report.answered += 1
        if self._on_answer is not None:
            self._on_answer(prediction, tag)
        self._made_progress()

    def _on_dead_letter(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            letter = decode(record.value, DeadLetter)
        except DecodeError:
            return
        candidates = [record.key]
        if letter.key is not None:
            with contextlib.suppress(binascii.Error, ValueError):
                candidates.append(base64.b64decode(letter.key, validate=True))
        for raw in candidates:
            request_id = raw.decode(errors="replace") if raw is not None else None
            if request_id is not None and self._pending.pop(request_id, None) is not None:
                self._report.rejected += 1
                log.warning(
                    "request %s was rejected by %s: %s", request_id, letter.service, letter.reason
                )
                self._made_progress()
                return

    def _made_progress(self) -> None:
        self._last_progress = time.monotonic()
        self._progress.set()
        self._on_done(1)


def _failure(result: asyncio.Future[object]) -> str | None:
    """Why a send's delivery failed, or None when the broker acknowledged it."""
    if result.cancelled():
        return "cancelled before the broker acknowledged it"
    error = result.exception()
    return None if error is None else kafka.describe(error)


async def _first_of(*events: asyncio.Event, seconds: float) -> None:
    """Return when any of the events is set, or after ``seconds``."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
