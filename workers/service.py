"""The inference worker: a consumer-group member that answers ReviewRequests in micro-batches.

The loop, per batch (:meth:`Worker._consume`, one screen): fetch (up to ``max_batch_size``
records or ``max_wait_ms``) -> decode once -> one ONNX Runtime call in a thread (on the loop
for a batch of at most ``inline_max_batch``: ``workers.classify``) -> send the predictions, the
error replies of refused requests and their dead letters. Then, off the loop,
the batch's settlement awaits every broker acknowledgement (``workers.settlement``) while the
next batch is already fetched and classified (at most ``max_batches_in_flight`` unsettled).
Only settled offsets are committed (``workers.offsets``): every ``commit_interval_ms``, when
idle, before a rebalance and on stop. A crash anywhere before the commit replays the
uncommitted batches (here or, after a rebalance, on another worker): at-least-once.

Beside it, a :class:`~workers.follower.ModelFollower` reads the compacted models topic and
hands each ModelChanged to the :class:`~workers.reload.Reloader`, which has the
:class:`~workers.models.ModelSlot` load and check the version off the event loop (retrying with
backoff) and swap it in between batches (checking it there, once the served version's weights
left memory: ``workers.models``); a :class:`~workers.status.StatusReporter` tells the
fleet topic what this worker serves, on every change and every ``heartbeat_s``.

A shadow worker (``role`` shadow, the default for the ``challenger`` alias) is the same loop in
a consumer group of its own: it answers into the shadow predictions topic only, so no client
ever gets a shadow answer; it sends no dead letters and explains nothing. When its challenger
is withdrawn it commits the requests it reads without answering them.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from contracts import KafkaSettings, ModelChanged
from contracts.messages import utc_now
from runtime.health import HealthServer, Readiness
from runtime.kafka import ModelEvents, connect, to_record, wait_for_kafka
from runtime.records import Record
from workers import kafka, outbox
from workers.batch import collect, failure, predictions, triage
from workers.classify import classify
from workers.follower import ModelFollower
from workers.metrics import WorkerMetrics
from workers.models import LoadedModel, ModelRefused, ModelSlot, ModelSource, Prefetching
from workers.offsets import Offsets, requests_lag
from workers.prefetch import Prefetcher
from workers.registry import MlflowModelSource
from workers.reload import Failure, Reloader
from workers.settings import Settings
from workers.settlement import Settlements
from workers.status import StatusReporter

log = logging.getLogger(__name__)

SERVICE = "workers"


class Worker:
    def __init__(self, settings: Settings, *, source: ModelSource | None = None) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.health = HealthServer(
            service=SERVICE,
            host=settings.host,
            port=settings.port,
            registry=self.metrics.registry,
            readiness=self.readiness,
        )
        self.settlements = Settlements()
        self.offsets = Offsets(self.metrics)
        self.follower: ModelFollower | None = None
        self.reloader: Reloader | None = None
        self.status = StatusReporter(
            settings, self.metrics, lag=lambda: requests_lag(self._consumer)
        )
        self._source = source
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._consuming = False
        self._producer: AIOKafkaProducer | None = None
        self._reply_partitions = 1  # read from the predictions topic's metadata at start
        self._consumer: AIOKafkaConsumer | None = None
        self._cache_dir: Path | None = None

    @property
    def slot(self) -> ModelSlot | None:
        return None if self.follower is None else self.follower.slot

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

    async def readiness(self) -> Readiness:
        model = self.slot is not None and self.slot.current is not None
        checks = {"model": model, "consuming": self._consuming and not self._stopping.is_set()}
        if self._stopping.is_set():
            return Readiness(checks, "stopping")
        if not model:
            s = self.settings
            return Readiness(checks, f"no model: waiting for {s.model_name}@{s.model_alias}")
        return Readiness(checks, None if self._consuming else "not consuming yet")

    async def run(self) -> None:
        s = self.settings
        source = self._source
        if source is None:
            source = self._registry()
        slot = ModelSlot(
            source,
            s.model_name,
            s.model_alias,
            on_swap=self._swapped,
            on_refuse=self._refused,
            on_withdraw=self._withdrawn,
            between_batches=self._batch_lock,
        )
        self.reloader = Reloader(
            slot, cap_s=s.load_retry_cap_s, on_loading=self._loading, on_failure=self._failed
        )
        prefetcher = Prefetcher(source, self.metrics) if isinstance(source, Prefetching) else None
        self.follower = ModelFollower(
            self.reloader,
            s,
            self.metrics,
            stopping=self._stopping,
            registry_over_http=self._source is None,
            withdraw_on_tombstone=s.shadow,
            prefetcher=prefetcher,
        )
        client_id = f"rs-worker-{s.worker_id}"
        verifier = s.trusted_keys.verifier(self.metrics.models_refused)
        stopping = self._stopping.is_set
        topics = [
            s.kafka.requests_topic,
            s.answers_topic,
            s.kafka.models_topic,
            s.kafka.fleet_topic,
        ]
        if not await wait_for_kafka(
            s.kafka, topics=topics, group=s.group_id, log=log, give_up=stopping
        ):
            log.info("worker %s stopped", s.worker_id)
            return
        self._producer = await connect(
            lambda: kafka.producer(s.kafka, client_id=client_id), what="producer", give_up=stopping
        )
        self._stack.push_async_callback(self._producer.stop)
        self._reply_partitions = len(await self._producer.partitions_for(s.answers_topic))
        events = await connect(
            lambda: ModelEvents(s.kafka, client_id=f"{client_id}-models", verifier=verifier),
            what=f"models topic {s.kafka.models_topic}",
            give_up=stopping,
        )
        self._stack.push_async_callback(events.stop)
        producer = self._producer
        async with asyncio.TaskGroup() as tasks:
            side = [
                tasks.create_task(self.status.run(producer), name="fleet-status"),
                tasks.create_task(self.reloader.run(), name="reload-model"),
                tasks.create_task(self.follower.follow(events), name="follow-models"),
            ]
            if prefetcher is not None:
                side.append(tasks.create_task(prefetcher.run(), name="prefetch-model"))
            if await self.follower.wait_for_model():
                self._consumer = await connect(
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
            for task in side:
                task.cancel()
        await self.status.stopped(producer)
        log.info("worker %s stopped", s.worker_id)

    def _registry(self) -> ModelSource:
        return MlflowModelSource(
            self.settings.mlflow_tracking_uri,
            cache_dir=self._cache_dir,
            intra_op_threads=self.settings.intra_op_threads,
            inter_op_threads=self.settings.inter_op_threads,
            artifact_prefixes=self.settings.artifact_prefixes,
        )

    def _requests_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        consumer = AIOKafkaConsumer(
            **s.kafka.client(),
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

    def _swapped(self, old: LoadedModel | None, new: LoadedModel) -> None:
        if old is not None:
            self.metrics.model_info.remove(old.name, old.version, old.sha256)
        self.metrics.model_info.labels(new.name, new.version, new.sha256).set(1)
        self.metrics.model_version.set(float(new.version) if new.version.isdigit() else -1)
        self.metrics.model_loads.labels(outcome="loaded", stage="").inc()
        for step, seconds in new.timings.items():
            self.metrics.model_load_seconds.labels(step=step).observe(seconds)
        if new.timings:
            log.info(
                "version %s loaded in %.3f s (%s)",
                new.version,
                sum(new.timings.values()),
                ", ".join(f"{step} {seconds:.3f} s" for step, seconds in new.timings.items()),
            )
        self.status.serving(new, None if self.reloader is None else self.reloader.wanted)

    def _withdrawn(self, old: LoadedModel) -> None:
        self.metrics.model_info.remove(old.name, old.version, old.sha256)
        self.metrics.model_version.set(-1)
        self.status.withdrawn()

    def _refused(self, event: ModelChanged, error: ModelRefused) -> None:
        self.metrics.model_loads.labels(outcome="refused", stage=error.stage).inc()

    def _loading(self, event: ModelChanged, failed_so_far: int) -> None:
        self.metrics.wanted_model_version.set(
            float(event.version) if event.version.isdigit() else -1
        )
        self.status.loading(event, failed_so_far)

    def _failed(self, failure: Failure) -> None:
        permanent = "false" if failure.retrying else "true"
        self.metrics.model_load_failures.labels(failure.error.stage, permanent).inc()
        self.status.failed(failure)

    # -- the loop ----------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        s = self.settings

        async def fetch(timeout_s: float, max_records: int) -> list[Record]:
            data = await consumer.getmany(
                timeout_ms=max(0, int(timeout_s * 1000)), max_records=max_records
            )
            return [to_record(m) for messages in data.values() for m in messages]

        log.info(
            "consuming %s as group %s (%s, answers to %s; batches of up to %d, %.0f ms wait)",
            s.kafka.requests_topic, s.group_id, s.role, s.answers_topic, s.max_batch_size,
            s.max_wait_ms,
        )  # fmt: skip
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
                    await self.settlements.settle(keep=s.max_batches_in_flight - 1)
                    due = time.monotonic() - self.offsets.last_commit >= s.commit_interval_ms / 1000
                    if due:
                        async with self._batch_lock:
                            await self.offsets.commit(consumer, self.settlements.take())
                else:  # idle: commit everything sent so far
                    await self.settlements.settle(keep=0)
                    async with self._batch_lock:
                        await self.offsets.commit(consumer, self.settlements.take())
                self.offsets.measure_lag(consumer)
        finally:
            await self.settlements.drain()
            await self.offsets.commit(consumer, self.settlements.take())

    async def _process(self, records: list[Record]) -> None:
        """Classify the batch and hand its replies to the producer; its settlement awaits
        their acknowledgements, after the settlement of the batch before."""
        s = self.settings
        assert self.slot is not None
        assert self._producer is not None
        picked_at = utc_now()
        model = self.slot.current  # read once: a swap takes effect from the next batch
        if model is None:  # a shadow worker whose challenger was withdrawn: nothing to compare
            self.settlements.add([], records)
            return
        accepted, rejected = triage(records, max_text_chars=s.max_text_chars)
        replies = []
        if accepted:
            started = time.perf_counter()
            answers, failed = await classify(
                model, accepted, self.metrics, explain=not s.shadow, inline_max=s.inline_max_batch
            )
            elapsed = time.perf_counter() - started
            rejected += failed
            self.metrics.inference_seconds.observe(elapsed)
            replies = predictions(
                answers,
                model_name=model.name,
                model_version=model.version,
                worker_id=s.worker_id,
                threshold=s.threshold,
                picked_at=picked_at,
                inference_ms=elapsed * 1000,
            )
            accepted = [a.item for a in answers]
        errors = [
            failure(r, worker_id=s.worker_id, model_name=model.name, model_version=model.version)
            for r in rejected
        ]
        sends = await outbox.send(
            self._producer,
            predictions_topic=s.answers_topic,
            reply_partitions=self._reply_partitions,
            dlq_topic=None if s.shadow else KafkaSettings.dlq(s.kafka.requests_topic),
            answered=list(zip(accepted, replies, strict=True)),
            refused=list(zip(rejected, errors, strict=True)),
            service=f"{SERVICE}/{s.worker_id}",
        )
        self.settlements.add(sends, records)
        self.metrics.batches.inc()
        self.metrics.batch_size.observe(len(records))
        self.metrics.predictions.labels(model_version=model.version).inc(len(replies))
        if not s.shadow:  # a shadow worker sends no dead letters
            for r in rejected:
                self.metrics.dead_letters.labels(error_type=r.error_type).inc()

    async def on_revoked(self, revoked: Any) -> None:
        """Before partitions move: the batch in hand is sent, every batch sent is settled (a
        failure is raised by the loop, not here), and what settled is committed."""
        async with self._batch_lock:
            await self.settlements.wait()
            if self._consumer is not None:
                await self.offsets.commit(self._consumer, self.settlements.take())
            log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))
            self.offsets.forget(revoked)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker.metrics.assigned_partitions.set(len(assigned))
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))
