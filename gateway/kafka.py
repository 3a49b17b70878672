"""The Kafka side of the gateway: publish requests and feedback, read this instance's replies.

Reply routing: every request carries ``reply_to`` = this instance's id, and workers copy it
into the Prediction. Each instance reads the whole predictions topic with no consumer group
(every partition assigned, starting from the end when it connects, nothing committed: a reply
is only useful to the live process that waits for it), skips records that do not contain its
id without decoding them, and resolves the futures of its own pending request ids. Replicas
never steal each other's replies, and adding one needs no coordination.

Start-up does not wait for Kafka: the clients connect in the background. A request that arrives
meanwhile waits for them up to the publish timeout (a review sent the moment a restarted gateway
accepts connections is published, not refused), then answers KafkaUnavailable (503). The first
connection waits quietly for the broker and the topics (``runtime.kafka``: one line when the wait
starts, one when it ends); a connection lost later is retried with backoff and logged. aiokafka
reconnects by itself when a broker that was reachable comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from contracts import (
    Alert,
    DecodeError,
    Feedback,
    KafkaSettings,
    Message,
    Prediction,
    RequestFailed,
    ReviewRequest,
    decode_reply,
    encode,
)
from gateway.errors import KafkaUnavailable
from gateway.metrics import Metrics
from runtime.backoff import backoff
from runtime.kafka import wait_for_kafka
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)

_CONNECT_ERRORS = (KafkaError, OSError, TimeoutError)


class KafkaBus:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        instance_id: str,
        on_reply: Callable[[Prediction | RequestFailed], bool],
        metrics: Metrics,
        publish_timeout_s: float,
        retry_after_s: int,
        supervisor: Supervisor,
    ) -> None:
        self._settings = settings
        self._supervisor = supervisor
        self._instance_id = instance_id
        self._marker = json.dumps(instance_id).encode()
        self._on_reply = on_reply
        self._metrics = metrics
        self._publish_timeout_s = publish_timeout_s
        self._retry_after_s = retry_after_s
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()  # set while the clients are started

    @property
    def connected(self) -> bool:
        return self._producer is not None and self._consumer is not None

    async def __aenter__(self) -> KafkaBus:
        self._task = self._supervisor.start(self._run(), name="kafka-bus")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Idempotent: stop reading replies, flush what was sent, close the clients."""
        task, self._task = self._task, None
        if task is not None:
            await self._supervisor.stop(task)
        await self._close()

    # --- publishing -----------------------------------------------------------------------

    async def publish_requests(self, requests: Sequence[ReviewRequest]) -> None:
        await self._publish(
            self._settings.requests_topic, [(r.request_id, r) for r in requests], "the review"
        )

    async def publish_feedback(self, feedback: Feedback) -> None:
        key = feedback.request_id or feedback.feedback_id
        await self._publish(self._settings.feedback_topic, [(key, feedback)], "the feedback")

    async def publish_alerts(self, alerts: Sequence[Alert]) -> None:
        await self._publish(
            self._settings.alerts_topic, [(a.fingerprint, a) for a in alerts], "the alerts"
        )

    async def _publish(self, topic: str, messages: list[tuple[str, Message]], what: str) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._publish_timeout_s):
                await self._up.wait()
        producer = self._producer
        if producer is None or not self.connected:
            raise KafkaUnavailable(
                f"Kafka is not reachable at {self._settings.bootstrap_servers}; "
                f"{what} was not sent, retry later",
                retry_after=self._retry_after_s,
            )
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                acks = [await producer.send(topic, encode(m), key=k.encode()) for k, m in messages]
                await asyncio.gather(*acks)
        except (KafkaError, TimeoutError) as exc:
            log.warning("publishing to %s failed: %r", topic, exc)
            raise KafkaUnavailable(
                f"Kafka did not accept {what} within {self._publish_timeout_s:g} s "
                f"({type(exc).__name__}); retry later",
                retry_after=self._retry_after_s,
            ) from exc

    async def check(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(2):
                await producer.client.fetch_all_metadata()
        except (*_CONNECT_ERRORS,):
            return False
        return True

    # --- replies --------------------------------------------------------------------------

    async def _run(self) -> None:
        s = self._settings
        await wait_for_kafka(
            s, topics=[s.requests_topic, s.predictions_topic, s.feedback_topic], log=log
        )
        while True:
            async for attempt in AsyncRetrying(
                wait=backoff(),
                retry=retry_if_exception_type(_CONNECT_ERRORS),
                before_sleep=self._log_retry,
            ):
                with attempt:
                    await self._connect()
            log.info(
                "reading replies for %s from %s",
                self._instance_id,
                self._settings.predictions_topic,
            )
            try:
                await self._consume()
            except Exception:  # a supervisor: whatever broke, log it and start over
                log.exception("reading replies failed; reconnecting")
                await self._close()
                await asyncio.sleep(1)  # back off before reconnecting

    async def _connect(self) -> None:
        producer = AIOKafkaProducer(
            **self._settings.client(),
            client_id=self._instance_id,
            acks="all",
            request_timeout_ms=int(self._publish_timeout_s * 1000),
        )
        consumer = AIOKafkaConsumer(
            **self._settings.client(),
            client_id=self._instance_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        try:
            await producer.start()
            await consumer.start()
            topic = self._settings.predictions_topic
            # Waits for the topic's metadata; UnknownTopicOrPartitionError if it is missing.
            partitions = await producer.partitions_for(topic)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            # Pin the start positions now: a reply produced after this point is never missed.
            await consumer.seek_to_end(*assigned)
            for tp in assigned:
                await consumer.position(tp)
        except BaseException:
            await consumer.stop()
            await producer.stop()
            raise
        self._producer, self._consumer = producer, consumer
        self._up.set()
        self._metrics.kafka_connected.set(1)

    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in batches.values():
                for record in records:
                    self._handle(record)

    def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        value = record.value
        if value is None or self._marker not in value:
            self._metrics.replies.labels("other").inc()
            return
        try:
            reply = decode_reply(value)
        except DecodeError as exc:
            log.warning(
                "undecodable prediction at %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc.reason,
            )
            self._metrics.replies.labels("invalid").inc()
            return
        if reply.reply_to != self._instance_id:
            self._metrics.replies.labels("other").inc()
            return
        matched = self._on_reply(reply)
        self._metrics.replies.labels("matched" if matched else "late").inc()

    async def _close(self) -> None:
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        self._up.clear()
        self._metrics.kafka_connected.set(0)
        if consumer is not None:
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "Kafka at %s not reachable (attempt %d: %s); retrying",
            self._settings.bootstrap_servers,
            state.attempt_number,
            error,
        )
