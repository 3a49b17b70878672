"""The Kafka side: checking the broker, building clients, and reading a range of a topic."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay

from producers.errors import KafkaUnavailable
from producers.settings import Settings
from runtime.backoff import backoff

log = logging.getLogger(__name__)


class _TopicsMissing(Exception):
    def __init__(self, topics: list[str]) -> None:
        super().__init__(", ".join(topics))
        self.topics = topics


async def topic_partitions(
    settings: Settings, topics: Iterable[str], *, required: Iterable[str] = ()
) -> dict[str, list[int]]:
    """The partitions of each of ``topics`` that exists (a missing one is left out).

    Retries up to ``connect_timeout_s`` while the broker cannot be reached or a ``required``
    topic is not there yet (one being created shows up within moments), then says which.
    """
    servers = settings.kafka.bootstrap_servers
    names = sorted(set(topics) | set(required))
    found: dict[str, list[int]] = {}
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(settings.connect_timeout_s),
            wait=backoff(2),
            retry=retry_if_exception_type((KafkaError, OSError, _TopicsMissing)),
            reraise=True,
        ):
            with attempt:
                admin = AIOKafkaAdminClient(
                    **settings.kafka.client(),
                    request_timeout_ms=min(settings.request_timeout_ms, 5000),
                    client_id=settings.client_id,
                )
                await admin.start()
                try:
                    described = await admin.describe_topics(names)
                finally:
                    await admin.close()
                found = {
                    topic["topic"]: sorted(p["partition"] for p in topic["partitions"])
                    for topic in described
                    if topic["error_code"] == 0 and topic["partitions"]
                }
                if missing := sorted(set(required) - set(found)):
                    raise _TopicsMissing(missing)
    except _TopicsMissing as exc:
        raise KafkaUnavailable(
            f"topic(s) {exc} do not exist on {servers} (create them with `python -m deploy.topics`)"
        ) from None
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {servers} within {settings.connect_timeout_s:g} s"
            f" ({describe(exc)}); is it running? (RS_KAFKA_BOOTSTRAP_SERVERS)"
        ) from None
    return found


async def check_topics(settings: Settings, topics: Iterable[str]) -> dict[str, list[int]]:
    """Like :func:`topic_partitions`, but every topic must exist."""
    names = list(topics)
    return await topic_partitions(settings, names, required=names)


def describe(exc: BaseException) -> str:
    """``Type: message``, without saying the type twice as Kafka errors do."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def new_producer(settings: Settings) -> AIOKafkaProducer:
    # Idempotence keeps the client's own retries from writing a record twice.
    return AIOKafkaProducer(
        **settings.kafka.client(),
        client_id=settings.client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        request_timeout_ms=settings.request_timeout_ms,
    )


def new_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer outside any group: partitions are assigned by hand, nothing is committed."""
    return AIOKafkaConsumer(
        **settings.kafka.client(),
        client_id=settings.client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=settings.request_timeout_ms,
    )


async def start(client: AIOKafkaProducer | AIOKafkaConsumer, servers: str) -> None:
    try:
        await client.start()
    except (KafkaError, OSError) as exc:
        await client.stop()
        raise KafkaUnavailable(
            f"cannot start a Kafka client on {servers}: {describe(exc)}"
        ) from None


def to_millis(moment: datetime) -> int:
    """Epoch milliseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class TopicRange:
    """Which records of a topic to read: start inclusive, end exclusive, per partition.

    The start is ``start_offset``, else the first record at or after ``since``, else the
    beginning. The end is ``end_offset``, else the first record at or after ``until``, else the
    end of the partition when the read starts (so a replay into the same topic never chases its
    own output). Offsets are clamped to what the partition holds.
    """

    topic: str
    partitions: tuple[int, ...] = ()
    start_offset: int | None = None
    end_offset: int | None = None
    since: datetime | None = None
    until: datetime | None = None


async def resolve_range(
    settings: Settings, consumer: AIOKafkaConsumer, selection: TopicRange
) -> dict[TopicPartition, tuple[int, int]]:
    """[start, end) offsets for every selected partition."""
    known = (await check_topics(settings, [selection.topic]))[selection.topic]
    wanted = set(selection.partitions) or set(known)
    if unknown := wanted - set(known):
        raise KafkaUnavailable(
            f"topic {selection.topic} has no partition {sorted(unknown)} (it has {sorted(known)})"
        )
    tps = [TopicPartition(selection.topic, p) for p in sorted(wanted)]
    first = await consumer.beginning_offsets(tps)
    last = await consumer.end_offsets(tps)
    starts = dict(first)
    ends = dict(last)
    if selection.start_offset is not None:
        starts = dict.fromkeys(tps, selection.start_offset)
    elif selection.since is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, to_millis(selection.since)))
        starts = {tp: last[tp] if hit is None else hit.offset for tp, hit in found.items()}
    if selection.end_offset is not None:
        ends = dict.fromkeys(tps, selection.end_offset)
    elif selection.until is not None:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, to_millis(selection.until)))
        ends = {tp: last[tp] if hit is None else hit.offset for tp, hit in found.items()}
    ranges = {}
    for tp in tps:
        start = min(max(starts[tp], first[tp]), last[tp])
        end = min(max(ends[tp], start), last[tp])
        ranges[tp] = (start, end)
    return ranges


async def read_range(
    consumer: AIOKafkaConsumer,
    ranges: dict[TopicPartition, tuple[int, int]],
    *,
    idle_timeout_s: float = 30.0,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record in the ranges, partition by partition in offset order within each."""
    todo = {tp: span for tp, span in ranges.items() if span[0] < span[1]}
    if not todo:
        return
    consumer.assign(list(todo))
    for tp, (start, _) in todo.items():
        consumer.seek(tp, start)
    while todo:
        batches = await consumer.getmany(*todo, timeout_ms=int(idle_timeout_s * 1000))
        if not batches:
            raise KafkaUnavailable(
                f"no records from {sorted(str(tp) for tp in todo)} for {idle_timeout_s:g} s"
                " although the range is not finished"
            )
        for tp, records in batches.items():
            end = todo[tp][1] if tp in todo else -1
            for record in records:
                if record.offset < end:
                    yield record
            if tp in todo and await consumer.position(tp) >= end:
                del todo[tp]
                consumer.pause(tp)
