"""Kafka through faust: the app, its source topics, dead letters and lag.

The app owns no topic of its own. It has no tables (the windowed state is in PostgreSQL, in the
same transaction as the records, which a table's changelog could not be), the leader topic is
disabled, and faust never declares topics: the broker's auto-creation is off and
``deploy.topics`` creates every topic the processor touches (the predictions, feedback
and shadow predictions topics and their ``.dlq`` topics). The consumer group is the app id;
offsets are committed by faust for acknowledged records only, and records are acknowledged in
``stats.service`` after their transaction has committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.auth import SASLCredentials, SSLCredentials
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.auth import CredentialsT

from contracts.topics import KafkaSettings
from runtime.kafka import wait_for_kafka
from runtime.records import Record
from stats.batches import DeadLetterUnavailable
from stats.fetcher import BatchTransport
from stats.metrics import Metrics
from stats.settings import Settings

log = logging.getLogger(__name__)


async def wait_for_broker(settings: Settings) -> None:
    """Return once the broker serves the source and dead-letter topics and the group's
    coordinator, for as long as it takes; quietly (``runtime.startup``)."""
    kafka = settings.kafka
    sources = [kafka.predictions_topic, kafka.feedback_topic, kafka.shadow_predictions_topic]
    await wait_for_kafka(
        kafka,
        topics=[*sources, *(KafkaSettings.dlq(t) for t in sources)],
        group=settings.group_id,
        log=log,
    )


def credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """The same security as every aiokafka client (``KafkaSettings.client_options``), in
    faust's terms: faust hands them on to its own aiokafka clients."""
    if kafka.security_protocol.startswith("SASL_"):
        return SASLCredentials(
            username=kafka.username,
            password=kafka.secret(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=kafka.ssl_context(),
        )
    if kafka.security_protocol == "SSL":
        return SSLCredentials(kafka.ssl_context())
    return None


def make_app(settings: Settings) -> faust.App:
    servers = [
        f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")
    ]
    # faust creates only the last folder of its datadir; a fresh checkout has no .state yet.
    settings.data_dir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.group_id,
        broker=servers,
        broker_credentials=credentials(settings.kafka),
        autodiscover=False,
        # No faust-owned topics (see the module docstring).
        topic_allow_declare=False,
        topic_disable_leader=True,
        # Where a fresh group starts: the whole retained history is counted once.
        consumer_auto_offset_reset="earliest",
        # A source topic created after start-up is found (and assigned) within this time.
        consumer_metadata_max_age_ms=30_000,
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        # Stopping commits what was acknowledged; it never waits for records still in buffers.
        stream_wait_empty=False,
        producer_acks=-1,  # dead letters are acknowledged by all in-sync replicas
        # /healthz, /readyz and /metrics are every service's (runtime.health), not faust's.
        web_enabled=False,
        datadir=str(settings.data_dir),
    )
    # The consumer's transport only (the producer keeps faust's): one fetch per delivery, see
    # stats.fetcher. App.transport's setter is how faust lets an app bring its own.
    app.transport = BatchTransport(app.conf.broker_consumer, app)
    return app


def source_topic(app: faust.App, name: str) -> Any:
    """A topic read as raw bytes: decoding happens once, at our edge (stats.batches)."""
    return app.topic(name, key_serializer="raw", value_serializer="raw")


def record_of(event: Any) -> Record:
    message = event.message
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
    )


async def take_batches(
    app: faust.App, stream: Any, max_: int, within_s: float
) -> AsyncIterator[list[Any]]:
    """The agent's events in batches of up to ``max_``, read straight from its channel.

    Why not ``stream.noack_take``: that passes every record through the stream's processors
    and a task switch of its own, which cost more CPU than decoding and storing the record.
    Here a batch is whatever the consumer has already delivered (stats.fetcher delivers a
    whole fetch at a time), taken in one go, plus what arrives within ``within_s`` while it is
    not full. What the stream did per event and the processor relies on is kept: an event
    of a generation before the latest rebalance, or read while the flow is stopped, is
    dropped unacknowledged (its partition is read again from the committed offset by whoever
    owns it now), and the rest are tracked as pending acknowledgement. Nothing is
    acknowledged here: the caller acks each event after its transaction.
    """
    channel = aiter(stream.channel)  # subscribes the agent's topic, as iterating the stream does
    loop = asyncio.get_running_loop()
    while True:
        try:
            events = [await channel.get()]
        except StopAsyncIteration:  # faust ends its channels so when it stops
            return
        deadline = loop.time() + within_s
        while len(events) < max_:
            _drain(channel, events, max_)
            left = deadline - loop.time()
            if len(events) >= max_ or left <= 0:
                break
            try:
                events.append(await channel.get(timeout=left))
            except (TimeoutError, StopAsyncIteration):
                break  # the events taken are still stored and acknowledged
        if current := _current(app, events):
            yield current


def _drain(channel: Any, events: list[Any], max_: int) -> None:
    """Move what the channel's queue holds now into ``events``, up to ``max_`` in all."""
    queue = channel.queue
    while len(events) < max_ and not queue.empty():
        try:
            events.append(queue.get_nowait())
        except asyncio.QueueEmpty:  # only an error is pending: the next get() raises it
            return


def _current(app: faust.App, events: list[Any]) -> list[Any]:
    """The events of the current generation, tracked as pending acknowledgement (as
    ``Stream`` does for each event it yields)."""
    generation = app.consumer_generation_id
    if not app.flow_control.is_active():
        return []
    consumer = app.consumer
    current = [e for e in events if e.message.generation_id == generation]
    for event in current:
        if not event.message.tracked:
            event.message.tracked = True
            consumer.track_message(event.message)
    return current


def acknowledge(app: faust.App, events: Sequence[Any]) -> None:
    """Acknowledge stored events: faust may now commit their offsets (``Stream.ack`` without
    the stream's own per-event sensors, which never saw them)."""
    on_message_out = app.sensors.on_message_out
    for event in events:
        if event.ack():
            message = event.message
            on_message_out(message.tp, message.offset, message)


def topics_known(app: faust.App, *topics: str) -> bool:
    """The consumer's metadata knows every one of these topics (they exist on the broker).

    Read from the aiokafka consumer's own cluster metadata, which every member of the group
    keeps for the topics it subscribes. Not faust's ``Consumer.topic_partitions``: that reads
    the group coordinator's snapshot, which aiokafka (0.14) fills in only on the member that
    computes the assignment, the group's leader, so a processor that joined a group already
    led by another was never ready (issue #20).
    """
    consumer = cast(faust_aiokafka.Consumer, app.consumer)._thread._consumer  # None until started
    return consumer is not None and all(consumer.partitions_for_topic(t) for t in topics)


class FaustDeadLetterSink:
    """Dead letters through the app's producer (acks=all), waiting for the broker's ack."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def send_all(self, letters: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        producer = self._app.producer
        try:
            pending = [
                await producer.send(topic, key, value, partition=None, timestamp=None, headers=None)
                for topic, key, value in letters
            ]
            await asyncio.gather(*pending)
        except (ProducerSendError, KafkaError) as exc:
            raise DeadLetterUnavailable(f"{type(exc).__name__}: {exc}") from exc


class LagMonitor:
    """Consumer-group lag per assigned partition: end offset minus committed offset."""

    def __init__(
        self, app: faust.App, group_id: str, kafka: KafkaSettings, metrics: Metrics
    ) -> None:
        self._app = app
        self._group_id = group_id
        self._admin = AIOKafkaAdminClient(**kafka.client(), request_timeout_ms=10_000)
        self._metrics = metrics
        self._started = False

    async def update(self) -> None:
        if not self._started:
            await self._admin.start()
            self._started = True
        tps = sorted(self._app.consumer.assignment())
        if not tps:
            return
        ends = await self._app.consumer.highwaters(*tps)
        committed = await self._admin.list_consumer_group_offsets(self._group_id, partitions=tps)
        self._metrics.lag.clear()  # partitions revoked since the last update disappear
        for tp in tps:
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else 0
            lag = max(0, int(ends.get(tp, position)) - position)
            self._metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def close(self) -> None:
        if self._started:
            await self._admin.close()
