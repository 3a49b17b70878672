"""The inference worker: a consumer-group member that answers ReviewRequests in micro-batches.

The loop, per batch: fetch (up to ``max_batch_size`` records or ``max_wait_ms``) -> decode once
-> one ONNX Runtime call in a thread -> produce the predictions and dead letters. Then, off the
loop, a settlement awaits every broker acknowledgement, while the next batch is already fetched
and classified (at most ``max_batches_in_flight`` batches unsettled). Batches settle in order,
and only settled offsets are committed: every ``commit_interval_ms``, when idle, before a
rebalance and on stop. A crash anywhere before the commit replays the uncommitted batches (on this
worker or, after a rebalance, on another): at-least-once, never at-most-once.

Beside it, a follower task reads the compacted models topic and hands each ModelChanged to the
:class:`~workers.models.ModelSlot`, which loads and checks the version off the event loop and
swaps it in between batches.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from contracts import FailureKind, KafkaSettings, ModelChanged, dead_letter, encode
from contracts.messages import utc_now
from runtime.kafka import wait_for_kafka
from runtime.startup import http_ok, wait_for
from workers import kafka
from workers.batch import (
    Accepted,
    Record,
    Rejected,
    collect,
    failures,
    next_offsets,
    predictions,
    triage,
)
from workers.http import HealthServer
from workers.metrics import WorkerMetrics
from workers.models import LoadedModel, ModelRefused, ModelSlot, ModelSource
from workers.settings import Settings

log = logging.getLogger(__name__)

SERVICE = "workers"


class Worker:
    def __init__(self, settings: Settings, *, source: ModelSource | None = None) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.health = HealthServer(
            host=settings.host,
            port=settings.port,
            registry=self.metrics.registry,
            readiness=self.readiness,
            service=SERVICE,
        )
        self._source = source
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._unsettled: deque[asyncio.Task[None]] = deque()  # oldest first
        self._consuming = False
        self._caught_up = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._reply_partitions = 1  # read from the predictions topic's metadata at start
        self._consumer: AIOKafkaConsumer | None = None
        self._cache_dir: Path | None = None
        self._last_lag_check = 0.0
        self._positions: dict[TopicPartition, int] = {}  # next offset, as committed
        self._settled: dict[TopicPartition, int] = {}  # next offset, replies acknowledged
        self._last_commit = 0.0
        self.slot: ModelSlot | None = None
        # Said "waiting for MLflow" at start-up: say so once it first answers.
        self._registry_waited = self._registry_answered = False

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        await self.health.start()
        self._stack.push_async_callback(self.health.stop)
        self._cache_dir = Path(
            self._stack.enter_context(tempfile.TemporaryDirectory(prefix="rs-worker-"))
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def stop(self) -> None:
        """Finish the batch in hand, commit, leave the group; safe to call any number of times."""
        if not self._stopping.is_set():
            log.info("stopping: draining the current batch")
            self._stopping.set()

    def readiness(self) -> str | None:
        if self._stopping.is_set():
            return "stopping"
        if self.slot is None or self.slot.current is None:
            return f"no model: waiting for {self.settings.model_name}@{self.settings.model_alias}"
        if not self._consuming:
            return "not consuming yet"
        return None

    async def run(self) -> None:
        s = self.settings
        source = self._source
        if source is None:
            source = await asyncio.to_thread(self._registry)
        self.slot = ModelSlot(
            source, s.model_name, s.model_alias, on_swap=self._swapped, on_refuse=self._refused
        )
        client_id = f"rs-worker-{s.worker_id}"
        stopping = self._stopping.is_set
        topics = [s.kafka.requests_topic, s.kafka.predictions_topic, s.kafka.models_topic]
        if not await wait_for_kafka(
            s.kafka, topics=topics, group=s.group_id, log=log, give_up=stopping
        ):
            log.info("worker %s stopped", s.worker_id)
            return
        self._producer = await kafka.connect(
            lambda: kafka.producer(s.kafka, client_id=client_id), what="producer", give_up=stopping
        )
        self._stack.push_async_callback(self._producer.stop)
        self._reply_partitions = len(await self._producer.partitions_for(s.kafka.predictions_topic))
        events = await kafka.connect(
            lambda: kafka.ModelEvents(s.kafka, client_id=f"{client_id}-models"),
            what=f"models topic {s.kafka.models_topic}",
            give_up=stopping,
        )
        self._stack.push_async_callback(events.stop)
        async with asyncio.TaskGroup() as tasks:
            follower = tasks.create_task(self._follow_models(events))
            if await self._wait_for_model():
                self._consumer = await kafka.connect(
                    self._requests_consumer, what="requests consumer", give_up=stopping
                )
                try:
                    self._consuming = True
                    await self._consume(self._consumer)
                finally:
                    self._consuming = False
                    # Leaves the group at once, so the partitions move without a session timeout.
                    await self._consumer.stop()
                    log.info("left consumer group %s", s.group_id)
            follower.cancel()
        log.info("worker %s stopped", s.worker_id)

    def _registry(self) -> ModelSource:
        from workers.registry import MlflowModelSource  # imports mlflow: slow, so in a thread

        return MlflowModelSource(
            self.settings.mlflow_tracking_uri,
            cache_dir=self._cache_dir,
            intra_op_threads=self.settings.intra_op_threads,
            inter_op_threads=self.settings.inter_op_threads,
        )

    def _requests_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka.bootstrap_servers,
            client_id=f"rs-worker-{s.worker_id}",
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group starts with what is already waiting
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_records=s.max_batch_size,
        )
        consumer.subscribe([s.kafka.requests_topic], listener=_Rebalance(self))
        return consumer

    # -- the model ---------------------------------------------------------------------------

    async def _follow_models(self, events: kafka.ModelEvents) -> None:
        assert self.slot is not None
        latest = await events.catch_up()
        event = latest.get(self.settings.model_name)
        if event is not None and self.slot.concerns(event):
            log.info("models topic names version %s", event.version)
            await self._registry_up()
            await self.slot.offer(event)
        self._caught_up.set()  # only now may the registry be asked (if nothing loaded)
        while True:
            try:
                batch = await events.fetch(timeout_s=1.0)
            except KafkaError as exc:
                self.metrics.errors.labels(kind="models_topic").inc()
                log.warning("models topic: %s; retrying", exc)
                await asyncio.sleep(1)
                continue
            mine = [e for e in batch if self.slot.concerns(e)]
            if mine:  # only the newest matters; older ones in the same fetch are superseded
                await self.slot.offer(mine[-1])

    async def _registry_up(self) -> None:
        """The bundle comes from MLflow's artifact store, and at start-up MLflow may still be
        coming up (the stack starts in any order): wait for it rather than refuse the version."""
        uri = self.settings.mlflow_tracking_uri
        if self._source is None and uri.startswith(("http://", "https://")):
            await wait_for(
                "MLflow",
                uri,
                http_ok(f"{uri.rstrip('/')}/health"),
                log=log,
                retry_on=OSError,
                give_up=self._stopping.is_set,
            )
            self._registry_answered = True

    async def _wait_for_model(self) -> bool:
        """Until a model is in service (True) or a stop is asked for (False). While the topic
        names nothing usable, ask the registry where the alias points, now and then."""
        assert self.slot is not None
        s = self.settings
        await _first(self._caught_up.wait(), self._stopping.wait())
        tried: set[tuple[str, str]] = set()
        said = False  # say it once, not every poll
        while not self._stopping.is_set() and self.slot.current is None:
            event = await self._ask_registry(quiet=said)
            if event is not None and (event.version, event.sha256) not in tried:
                tried.add((event.version, event.sha256))
                await self.slot.offer(event, only_if_empty=True)
            if self.slot.current is None:
                log.log(
                    logging.DEBUG if said else logging.INFO,
                    "not ready: no model for %s@%s yet; waiting for the models topic and asking"
                    " the registry every %.0fs",
                    s.model_name,
                    s.model_alias,
                    s.registry_poll_interval_s,
                )
                said = True
                await _first(
                    self.slot.ready.wait(),
                    self._stopping.wait(),
                    limit_s=s.registry_poll_interval_s,
                )
        return self.slot.current is not None and not self._stopping.is_set()

    async def _ask_registry(self, *, quiet: bool) -> ModelChanged | None:
        assert self.slot is not None
        s = self.settings
        try:
            event = await asyncio.to_thread(self.slot.source.serving, s.model_name, s.model_alias)
        except Exception as exc:
            # At start-up MLflow may still be coming up (the stack starts in any order).
            self._registry_waited = True
            level = logging.DEBUG if quiet else logging.INFO
            log.log(
                level,
                "waiting for MLflow at %s (%s: %.200s)",
                s.mlflow_tracking_uri,
                type(exc).__name__,
                exc,
            )
            return None
        if self._registry_waited and not self._registry_answered:
            log.info("connected to MLflow at %s", s.mlflow_tracking_uri)
        self._registry_answered = True
        return event

    def _swapped(self, old: LoadedModel | None, new: LoadedModel) -> None:
        if old is not None:
            self.metrics.model_info.remove(old.name, old.version, old.sha256)
        self.metrics.model_info.labels(new.name, new.version, new.sha256).set(1)
        self.metrics.model_version.set(float(new.version) if new.version.isdigit() else -1)
        self.metrics.model_loads.labels(outcome="loaded", stage="").inc()

    def _refused(self, event: ModelChanged, error: ModelRefused) -> None:
        self.metrics.model_loads.labels(outcome="refused", stage=error.stage).inc()

    # -- the loop ----------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        s = self.settings

        async def fetch(timeout_s: float, max_records: int) -> list[Record]:
            data = await consumer.getmany(
                timeout_ms=max(0, int(timeout_s * 1000)), max_records=max_records
            )
            return [kafka.to_record(m) for messages in data.values() for m in messages]

        log.info(
            "consuming %s as group %s (batches of up to %d, %.0f ms wait)",
            s.kafka.requests_topic,
            s.group_id,
            s.max_batch_size,
            s.max_wait_ms,
        )
        try:
            while not self._stopping.is_set():
                # Not under the batch lock: during a rebalance getmany waits for the new
                # assignment, which waits for on_partitions_revoked, which waits for the lock.
                records = await collect(
                    fetch,
                    max_size=s.max_batch_size,
                    max_wait_s=s.max_wait_ms / 1000,
                    idle_timeout_s=s.idle_poll_ms / 1000,
                    clock=time.monotonic,
                )
                if records:
                    async with self._batch_lock:  # a rebalance waits for the batch to be sent
                        await self._process(records)
                    await self._settle(keep=s.max_batches_in_flight - 1)
                    if time.monotonic() - self._last_commit >= s.commit_interval_ms / 1000:
                        async with self._batch_lock:
                            await self._commit(consumer)
                else:  # idle: commit everything sent so far
                    await self._settle(keep=0)
                    async with self._batch_lock:
                        await self._commit(consumer)
                self._measure_lag(consumer)
        finally:
            await self._drain()
            await self._commit(consumer)

    async def _settle(self, *, keep: int) -> None:
        """Wait for the oldest settlements until at most ``keep`` are unsettled; a failed one
        (an unacknowledged reply) raises here, which stops the worker before any later commit."""
        while len(self._unsettled) > keep or (self._unsettled and self._unsettled[0].done()):
            await self._unsettled.popleft()

    async def _drain(self) -> None:
        """Let every settlement finish, then raise the first failure, if any."""
        tasks = list(self._unsettled)
        self._unsettled.clear()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def _process(self, records: list[Record]) -> None:
        """Classify the batch and hand its replies to the producer; a settlement task awaits
        their acknowledgements, after the settlement of the batch before."""
        s = self.settings
        assert self.slot is not None
        assert self.slot.current is not None
        assert self._producer is not None
        picked_at = utc_now()
        model = self.slot.current  # read once: a swap takes effect from the next batch
        accepted, rejected = triage(records, max_text_chars=s.max_text_chars)
        replies = []
        if accepted:
            started = time.perf_counter()
            accepted, probabilities, failed = await self._predict(model, accepted)
            elapsed = time.perf_counter() - started
            rejected += failed
            self.metrics.inference_seconds.observe(elapsed)
            replies = predictions(
                accepted,
                probabilities,
                model_name=model.name,
                model_version=model.version,
                worker_id=s.worker_id,
                threshold=s.threshold,
                picked_at=picked_at,
                inference_ms=elapsed * 1000,
            )
        errors = failures(
            rejected, worker_id=s.worker_id, model_name=model.name, model_version=model.version
        )
        answered = [
            *((item.record.partition, p.request_id, encode(p))
              for item, p in zip(accepted, replies, strict=True)),
            *((r.record.partition, e.request_id, encode(e))
              for r, e in zip((r for r in rejected if r.request), errors, strict=True)),
        ]  # fmt: skip
        # Co-partitioned: a reply goes to its request's partition number (both topics are keyed
        # by request_id), so the replies leave as one record batch per partition, with no key
        # hash and no future per message. A retried request still lands where its first did.
        sends = await kafka.send_to_partitions(
            self._producer,
            s.kafka.predictions_topic,
            (
                (partition % self._reply_partitions, request_id.encode(), value)
                for partition, request_id, value in answered
            ),
        )
        dlq = KafkaSettings.dlq(s.kafka.requests_topic)
        for r in rejected:
            log.warning(
                "dead-lettering %s[%d]@%d: %s",
                r.record.topic,
                r.record.partition,
                r.record.offset,
                r.reason,
            )
            letter = dead_letter(
                topic=r.record.topic,
                partition=r.record.partition,
                offset=r.record.offset,
                key=r.record.key,
                value=r.record.value,
                reason=r.reason,
                error_type=r.error_type,
                service=f"{SERVICE}/{s.worker_id}",
            )
            sends.append(await self._producer.send(dlq, encode(letter), key=r.record.key))
        previous = self._unsettled[-1] if self._unsettled else None
        self._unsettled.append(asyncio.create_task(self._acknowledge(previous, sends, records)))
        self.metrics.batches.inc()
        self.metrics.batch_size.observe(len(records))
        self.metrics.predictions.labels(model_version=model.version).inc(len(replies))
        for r in rejected:
            self.metrics.dead_letters.labels(error_type=r.error_type).inc()

    async def _acknowledge(
        self,
        previous: asyncio.Task[None] | None,
        sends: Sequence[asyncio.Future[Any]],
        records: list[Record],
    ) -> None:
        await asyncio.gather(*sends)  # every reply acknowledged (acks=all) before the commit
        if previous is not None:
            await previous  # settles in batch order; if it failed, this batch fails too
        for (topic, partition), offset in next_offsets(records).items():
            self._settled[TopicPartition(topic, partition)] = offset

    async def _predict(
        self, model: LoadedModel, accepted: list[Accepted]
    ) -> tuple[list[Accepted], list[float], list[Rejected]]:
        """One ONNX Runtime call for the batch; if it fails, each request alone, so one bad
        request cannot sink the others."""
        texts = [a.request.text for a in accepted]
        try:
            result = await asyncio.to_thread(model.predictor.predict, texts)
            return accepted, [float(p) for p in result], []
        except Exception:
            self.metrics.errors.labels(kind="inference").inc()
            log.exception("batch inference failed; retrying its %d requests one by one", len(texts))
        ok: list[Accepted] = []
        probabilities: list[float] = []
        failed: list[Rejected] = []
        for item in accepted:
            try:
                (p,) = await asyncio.to_thread(model.predictor.predict, [item.request.text])
            except Exception as exc:
                reason = f"inference failed: {type(exc).__name__}: {exc}"
                failed.append(
                    Rejected(
                        item.record, reason, "InferenceError", item.request, FailureKind.INFERENCE
                    )
                )
            else:
                ok.append(item)
                probabilities.append(float(p))
        return ok, probabilities, failed

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the settled offsets not committed yet (under the batch lock, or from the
        rebalance listener, which holds it)."""
        self._last_commit = time.monotonic()
        offsets = {tp: o for tp, o in self._settled.items() if self._positions.get(tp) != o}
        self._settled.clear()
        if not offsets:
            return
        assigned = consumer.assignment()
        mine = {tp: o for tp, o in offsets.items() if tp in assigned}
        if len(mine) < len(offsets):
            # Fetched before a rebalance took those partitions away: the replies are out, and
            # the new owner answers the records again (at-least-once; idempotent downstream).
            log.info("not committing revoked partitions %s", sorted(set(offsets) - set(mine)))
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as exc:
            self.metrics.errors.labels(kind="commit").inc()
            log.warning("commit after a rebalance failed, the batch will be replayed: %s", exc)
            return
        self._positions.update(mine)

    def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._last_lag_check < 1.0:
            return
        self._last_lag_check = now
        lag = 0
        assigned = consumer.assignment()
        for tp in assigned:
            try:
                highwater = consumer.highwater(tp)
            except (IllegalStateError, AssertionError):
                continue  # revoked meanwhile
            if highwater is not None and tp in self._positions:
                lag += max(0, highwater - self._positions[tp])
        self.metrics.consumer_lag.set(lag)
        self.metrics.assigned_partitions.set(len(assigned))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.worker._batch_lock:  # the batch in hand is sent
            if self.worker._unsettled:  # and every batch sent is settled (a failure is
                await asyncio.wait(self.worker._unsettled)  # raised by the loop, not here)
            if self.worker._consumer is not None:
                await self.worker._commit(self.worker._consumer)
            log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))
            for tp in revoked:
                self.worker._positions.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker.metrics.assigned_partitions.set(len(assigned))
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))


async def _first(*waits: Any, limit_s: float | None = None) -> None:
    """Return when the first of the awaitables finishes (or the timeout passes)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
