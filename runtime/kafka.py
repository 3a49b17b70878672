"""Kafka for every service: is it ready (:func:`wait_for_kafka`), starting a client with the one
backoff (:func:`connect`), records as :class:`~runtime.records.Record`, and the compacted models
topic as ModelChanged events (:class:`ModelEvents`, read by the workers, the watcher and the
gateway).

Ready means: the broker answers, its topics exist and their leaders answer, and (for a
consumer group) the group coordinator is there.

A broker that has just started answers metadata requests before the local stack has created the
topics, and a fresh one has no ``__consumer_offsets`` until the first coordinator lookup: a client
started then logs "topic not found" or "coordinator not available" at ERROR, over and over. Probing
for exactly what the service needs first keeps those out of a normal start (``runtime.startup``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    UnknownTopicOrPartitionError,
)
from tenacity import AsyncRetrying, RetryCallState, before_sleep_log

from contracts import DecodeError, ModelChanged, decode
from contracts.topics import SERVING_ALIAS, KafkaSettings, models_key
from runtime.backoff import backoff
from runtime.records import Record
from runtime.signing import Signer, Verifier
from runtime.startup import NotYet, Probe, wait_for

log = logging.getLogger(__name__)

RETRIABLE = (KafkaError, OSError, TimeoutError, NotYet)


def kafka_probe(
    kafka: KafkaSettings, *, topics: Sequence[str] = (), group: str | None = None
) -> Probe:
    async def probe() -> None:
        admin = AIOKafkaAdminClient(
            **kafka.client(),
            client_id="rs-startup-probe",
            request_timeout_ms=5000,
        )
        try:
            try:
                await admin.start()
            except KafkaConnectionError as exc:  # its message lists addresses: say it plainly
                raise NotYet("no broker answers yet") from exc
            partitions: list[TopicPartition] = []
            if topics:
                for topic in await admin.describe_topics(list(topics)):
                    if topic["error_code"]:
                        raise NotYet(f"topic {topic['topic']} does not exist yet")
                    if any(p["leader"] < 0 for p in topic["partitions"]):
                        raise NotYet(f"topic {topic['topic']} has no leader yet")
                    partitions += [TopicPartition(topic["topic"], p["partition"])
                                   for p in topic["partitions"]]  # fmt: skip
                await _leaders_answer(kafka, partitions)
            if group is not None:
                # Also makes a fresh broker create __consumer_offsets.
                try:
                    await admin.find_coordinator(group)
                except CoordinatorNotAvailableError as exc:
                    raise NotYet(f"no coordinator for group {group} yet") from exc
        finally:
            await admin.close()

    return probe


async def _leaders_answer(kafka: KafkaSettings, partitions: list[TopicPartition]) -> None:
    """Every partition's leader answers an offsets request: just after a topic is created,
    the metadata may name a leader that still says "not leader" for a moment."""
    consumer = AIOKafkaConsumer(
        **kafka.client(),
        client_id="rs-startup-probe",
        group_id=None,
        request_timeout_ms=5000,
    )
    try:
        await consumer.start()
        await consumer.end_offsets(partitions)
    except KafkaTimeoutError as exc:
        raise NotYet("the topics' leaders do not answer yet") from exc
    finally:
        await consumer.stop()


async def wait_for_kafka(
    settings: KafkaSettings,
    *,
    topics: Sequence[str] = (),
    group: str | None = None,
    log: logging.Logger,
    give_up: Callable[[], bool] | None = None,
    level: int = logging.INFO,
) -> bool:
    """Until Kafka serves ``topics`` (and ``group``): True, or False when ``give_up()``."""
    return await wait_for(
        "Kafka",
        settings.bootstrap_servers,
        kafka_probe(settings, topics=topics, group=group),
        log=log,
        retry_on=RETRIABLE,
        give_up=give_up,
        level=level,
    )


class Startable(Protocol):
    async def start(self) -> Any: ...

    async def stop(self) -> Any: ...


S = TypeVar("S", bound=Startable)


async def connect(factory: Callable[[], S], *, what: str, give_up: Callable[[], bool]) -> S:
    """Start a client, retrying with backoff while the broker is away (services start in any
    order); ``give_up()`` ends the wait (a SIGTERM while waiting)."""

    def stop(state: RetryCallState) -> bool:
        return give_up()

    async for attempt in AsyncRetrying(
        stop=stop,
        wait=backoff(),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            client = factory()
            try:
                await client.start()
            except BaseException:
                await client.stop()
                raise
            log.info("%s connected", what)
            return client
    raise AssertionError("unreachable")  # pragma: no cover


def producer(kafka: KafkaSettings, *, client_id: str, **options: Any) -> AIOKafkaProducer:
    """Every send is acknowledged by all in-sync replicas before its future resolves (a
    record counts as sent only once it is durable); ``options`` tune the rest."""
    return AIOKafkaProducer(**kafka.client(), client_id=client_id, acks="all", **options)


async def send_signed(
    producer: AIOKafkaProducer,
    topic: str,
    key: bytes,
    value: bytes | None,
    signer: Signer | None,
) -> None:
    """Send a models-topic record (``value`` None: a tombstone), signed when a key is set."""
    headers = None if signer is None else signer.headers(key, value)
    await producer.send_and_wait(topic, value, key=key, headers=headers)


def to_record(message: Any) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
    )


@dataclass(frozen=True)
class Forgotten:
    """A tombstone on the models topic: compaction's way to forget a key (a model name, or
    ``<model>@<alias>`` for a challenger that was withdrawn)."""

    key: str


def keep_latest(
    latest: dict[str, ModelChanged],
    events: list[ModelChanged | Forgotten],
    *,
    forget: bool,
) -> None:
    """Update ``latest`` (one event per ``models_key(model, alias)``: the bare model name for
    the serving alias) with ``events``, in order; with ``forget``, a tombstone removes its key.

    The key comes from the event, not from its record: an old record of another alias, keyed
    by the bare name, still lands under its own alias."""
    for event in events:
        if isinstance(event, ModelChanged):
            latest[models_key(event.model_name, event.alias)] = event
        elif forget:
            latest.pop(event.key, None)


def serving_only(latest: dict[str, ModelChanged]) -> dict[str, ModelChanged]:
    """The events of the serving alias, by model name: what a reader that serves clients
    (the gateway) follows, never a challenger's."""
    return {e.model_name: e for e in latest.values() if e.alias == SERVING_ALIAS}


class ModelEvents:
    """The compacted models topic: every partition, from the beginning, no consumer group.

    A record that ``verifier`` does not trust (unsigned, signed by an unknown key, or with a
    bad signature: ``runtime.signing``) is logged, counted by the verifier and skipped, as if
    it had never been written."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str, verifier: Verifier) -> None:
        self.topic = kafka.models_topic
        self._verifier = verifier
        self._consumer = AIOKafkaConsumer(
            self.topic,
            **kafka.client(),
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def start(self) -> None:
        """Connect and read from the beginning; on any failure the client is closed again."""
        try:
            await self._consumer.start()  # without a group: assigned every partition
            # Never "caught up" on a topic whose partitions are unknown: a retriable error
            # instead (aiokafka's seek would fail an assert).
            if not self._consumer.assignment():
                raise UnknownTopicOrPartitionError(self.topic)
            await self._consumer.seek_to_beginning()
        except BaseException:
            await self._consumer.stop()
            raise

    async def stop(self) -> None:
        await self._consumer.stop()

    async def catch_up(
        self, *, timeout_s: float = 30, forget: bool = False
    ) -> dict[str, ModelChanged]:
        """Read up to the end as it is now; the latest event per ``models_key`` (so
        ``latest[model_name]`` is the serving alias's). With ``forget``, a tombstone removes
        its key (the serving workers and the watcher keep the last event)."""
        partitions = sorted(self._consumer.assignment())
        end = await self._consumer.end_offsets(partitions)
        latest: dict[str, ModelChanged] = {}
        for tp in partitions:
            while await self._consumer.position(tp) < end[tp]:
                keep_latest(latest, await self.read(timeout_s, tp), forget=forget)
        return latest

    async def fetch(self, timeout_s: float) -> list[ModelChanged]:
        """New events, in order, waiting at most ``timeout_s`` for the first."""
        return [e for e in await self.read(timeout_s) if isinstance(e, ModelChanged)]

    async def read(
        self, timeout_s: float, *partitions: TopicPartition
    ) -> list[ModelChanged | Forgotten]:
        """Like :meth:`fetch` (of ``partitions``, or all), tombstones included."""
        batches = await self._consumer.getmany(*partitions, timeout_ms=int(timeout_s * 1000))
        events: list[ModelChanged | Forgotten] = []
        for messages in batches.values():
            for message in messages:
                refusal = self._verifier.refusal(message.key, message.value, message.headers)
                if refusal is not None:
                    log.error(
                        "refusing record %s[%d]@%d on the models topic: %s",
                        message.topic,
                        message.partition,
                        message.offset,
                        refusal.replace("_", " "),
                    )
                    continue
                if message.value is None:
                    if message.key is not None:
                        events.append(Forgotten(message.key.decode(errors="replace")))
                    continue
                try:
                    events.append(decode(message.value, ModelChanged))
                except DecodeError as exc:
                    log.error(
                        "skipping undecodable record %s[%d]@%d on the models topic: %s",
                        message.topic,
                        message.partition,
                        message.offset,
                        exc.reason,
                    )
        return events
