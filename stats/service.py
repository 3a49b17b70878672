"""The stats processor: three faust agents, predictions, feedback and a challenger's shadow
predictions, into PostgreSQL.

Each agent is one plain loop that shows its acknowledgements::

    take a batch -> decode and write it (BatchProcessor.process: the DLQ decisions, one
    transaction retried while the database is away, the dead letters) -> ack every record
    of the batch -> the drift monitor -> faust commits acknowledged offsets

A record is acknowledged only after its transaction committed (or its dead letter was
acknowledged by the broker), so offsets never run ahead of the database; what a crash leaves
unacknowledged is read again and the idempotent writes in ``stats.db`` make the replay a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, suppress
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_never,
)

from contracts import Message
from runtime.backoff import backoff
from runtime.health import HealthServer, Readiness
from runtime.process import ServiceFailed
from runtime.startup import wait_for
from stats.batches import BatchProcessor, Kind
from stats.db import PostgresStatsStore, create_pool
from stats.kafka import (
    FaustDeadLetterSink,
    LagMonitor,
    acknowledge,
    make_app,
    record_of,
    source_topic,
    take_batches,
    topics_known,
    wait_for_broker,
)
from stats.metrics import Metrics
from stats.monitoring import Monitor
from stats.settings import Settings
from stats.store import StoreUnavailable

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 2.0


class ProcessorFailed(ServiceFailed):
    """An agent or faust itself failed; the process exits and is restarted from Kafka."""


class StatsService:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.metrics = Metrics()
        self.app = make_app(settings)
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None
        self._running = False
        self._database_ready = asyncio.Event()
        self._inflight: dict[Kind, asyncio.Lock] = {
            "prediction": asyncio.Lock(),
            "feedback": asyncio.Lock(),
            "shadow": asyncio.Lock(),
        }
        self._store: PostgresStatsStore | None = None
        self._batches: BatchProcessor | None = None
        self._lag: LagMonitor | None = None
        self._monitor: Monitor | None = None

        kafka = settings.kafka
        self.app.agent(source_topic(self.app, kafka.predictions_topic), name="stats.predictions")(
            self._consume_predictions
        )
        self.app.agent(source_topic(self.app, kafka.feedback_topic), name="stats.feedback")(
            self._consume_feedback
        )
        self.app.agent(source_topic(self.app, kafka.shadow_predictions_topic), name="stats.shadow")(
            self._consume_shadow
        )
        self.health = HealthServer(
            service="stats",
            host=settings.host,
            port=settings.port,
            registry=self.metrics.registry,
            readiness=self.readiness,
        )

    async def __aenter__(self) -> Self:
        s = self._settings
        pool = await create_pool(s.database.url.get_secret_value(), max_size=s.db_pool_max)
        self._stack.push_async_callback(_close_pool, pool)
        self._store = PostgresStatsStore(pool)
        self._batches = BatchProcessor(
            self._store,
            FaustDeadLetterSink(self.app),
            self.metrics,
            retry_max_backoff_s=s.retry_max_backoff_s,
        )
        if s.drift_enabled:
            self._monitor = Monitor(s.drift(), self.metrics, self._store)
        self._lag = LagMonitor(self.app, s.group_id, s.kafka, self.metrics)
        self._stack.push_async_callback(self._lag.close)
        self.metrics.db_up.set(0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        await self._stack.aclose()

    def stop(self) -> None:
        """Ask the service to drain and stop; safe to call any number of times, from a signal."""
        if not self._stopping.is_set():
            log.info("stopping")
            self._stopping.set()

    async def run(self) -> None:
        """Consume until stop() (or a failure); then drain the batches in flight and stop.

        HTTP starts at once (so /healthz answers and /readyz says what is missing), then the
        Kafka consumer once the broker answers; the agents take their first batch once
        PostgreSQL answers and the schema is migrated, whichever order the stack came up in.
        """
        s = self._settings
        try:
            # The health server first, so that /healthz answers while Kafka is awaited.
            await self.health.start()
        except OSError as exc:
            raise ProcessorFailed(
                f"cannot serve /healthz, /readyz, /metrics on {s.host}:{s.port}"
                f" (RS_STATS_HOST, RS_STATS_PORT): {exc}"
            ) from exc
        self._stack.push_async_callback(self.health.stop)
        if not await self._unless_stopped(wait_for_broker(s)):
            return
        try:
            await self.app.start()
        except Exception:
            await self.app.stop()
            raise
        self._running = True
        log.info(
            "consuming %s, %s and %s as group %s",
            s.kafka.predictions_topic,
            s.kafka.feedback_topic,
            s.kafka.shadow_predictions_topic,
            s.group_id,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                background = [
                    tasks.create_task(self._guarded("start-up", self._prepare_database())),
                    tasks.create_task(
                        self._guarded("purge", self._every(s.purge_interval_s, self._purge))
                    ),
                    tasks.create_task(
                        self._guarded("watch", self._every(LAG_INTERVAL_S, self._watch))
                    ),
                    *self._monitoring(tasks),
                ]
                await self._stopping.wait()
                for task in background:
                    task.cancel()
        finally:
            self._running = False
            await self._drain()
            await self.app.stop()
        if self._failure is not None:
            raise ProcessorFailed(str(self._failure)) from self._failure

    def _monitoring(self, tasks: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """The drift monitor's background work: learn profiles, check live accuracy."""
        s, monitor = self._settings, self._monitor
        if monitor is None:
            return []
        verifier = s.trusted_keys.verifier(self.metrics.models_refused)

        async def check_accuracy() -> None:
            if self._database_ready.is_set():  # migrated: the columns it reads exist
                await monitor.check_accuracy()

        return [
            tasks.create_task(self._guarded("models", monitor.follow_models(s.kafka, verifier))),
            tasks.create_task(
                self._guarded("accuracy", self._every(s.accuracy_interval_s, check_accuracy))
            ),
        ]

    # -- the agents ---------------------------------------------------------------------------

    async def _consume_predictions(self, stream: Any) -> None:
        after = self._monitor.stored if self._monitor is not None else None
        await self._consume("prediction", stream, after=after)

    async def _consume_feedback(self, stream: Any) -> None:
        await self._consume("feedback", stream)

    async def _consume_shadow(self, stream: Any) -> None:
        await self._consume("shadow", stream)

    async def _consume(
        self,
        kind: Kind,
        stream: Any,
        after: Callable[[Sequence[Message]], Awaitable[None]] | None = None,
    ) -> None:
        s = self._settings
        try:
            await self._database_ready.wait()
            # faust acknowledges nothing by itself; we do, after the transaction.
            async for events in take_batches(self.app, stream, s.batch_max, s.batch_within_s):
                # One batch at a time: decoding the next one during this transaction cost more
                # CPU per record than it saved (README, "Pipelined batches").
                if not await self._write(kind, events, after):
                    return  # failed: not acknowledged, the service stops
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not acknowledged: the batch is read again after the restart this exit causes.
            self._fail(f"{kind} agent (its batch is not acknowledged)", exc)

    async def _write(
        self,
        kind: Kind,
        events: Sequence[Any],
        after: Callable[[Sequence[Message]], Awaitable[None]] | None,
    ) -> bool:
        """Store one batch of faust's events and acknowledge them; False when it failed (the
        service stops, nothing of it is acknowledged)."""
        assert self._batches is not None
        try:
            async with self._inflight[kind]:
                outcome = await self._batches.process(kind, [record_of(e) for e in events])
                # Stored (or dead-lettered) and committed in PostgreSQL: only now may faust
                # commit these offsets.
                acknowledge(self.app, events)
            if after is not None:
                await after(outcome.messages)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"{kind} agent (its batch is not acknowledged)", exc)
            return False
        self.metrics.processed(len(events))
        log.debug("%s batch of %d: %s", kind, len(events), outcome)
        return True

    async def _unless_stopped(self, job: Awaitable[object]) -> bool:
        """Await ``job`` unless stop() comes first (then cancel it and answer False)."""
        work = asyncio.ensure_future(job)
        stopped = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not work.done():
            work.cancel()
            with suppress(asyncio.CancelledError):
                await work
            return False
        work.result()
        return True

    def _fail(self, what: str, exc: BaseException) -> None:
        log.error("%s failed; stopping: %r", what, exc, exc_info=exc)
        if self._failure is None:
            self._failure = exc
        self.stop()

    async def _guarded(self, what: str, job: Awaitable[None]) -> None:
        """A background job that fails stops the service (and the process, non-zero)."""
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(what, exc)

    # -- lifecycle helpers --------------------------------------------------------------------

    async def _prepare_database(self) -> None:
        """Wait for PostgreSQL, with backoff and for as long as it takes; then migrate."""
        assert self._store is not None
        store = self._store
        url = urlsplit(self._settings.database.url.get_secret_value())
        await wait_for(
            "PostgreSQL",
            f"{url.hostname}:{url.port or 5432}",
            store.ping,
            log=log,
            retry_on=StoreUnavailable,
            max_backoff_s=self._settings.retry_max_backoff_s,
        )
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=backoff(self._settings.retry_max_backoff_s),
            stop=stop_never,
            before_sleep=_log_waiting,
        ):
            with attempt:
                if self._settings.migrate:
                    applied = await store.migrate()
                    log.info("schema up to date (%d migrations applied now)", len(applied))
                elif pending := await store.pending_migrations():
                    # Another part migrates (the init job, the local stack): wait for it.
                    raise StoreUnavailable(
                        f"{len(pending)} migrations not applied yet (RS_STATS_MIGRATE=false)"
                    )
        self.metrics.db_up.set(1)
        self._database_ready.set()

    async def _drain(self) -> None:
        """Let the batches in flight finish (bounded), and keep new ones from starting."""
        timeout = self._settings.drain_timeout_s
        try:
            async with asyncio.timeout(timeout):
                for lock in self._inflight.values():
                    await lock.acquire()
        except TimeoutError:
            log.warning("a batch was still in flight after %.0fs; it will be read again", timeout)

    async def _every(self, interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await job()

    async def _purge(self) -> None:
        assert self._store is not None
        try:
            purged = await self._store.purge_unmatched(self._settings.unmatched_retention_s)
        except StoreUnavailable as exc:
            log.warning("purge of unmatched feedback skipped: %s", exc)
            return
        if purged:
            log.info("purged %d feedback records that never met their prediction", purged)
            self.metrics.purged.inc(purged)
        try:
            checks = await self._store.purge_drift(self._settings.drift_retention_s)
        except StoreUnavailable as exc:
            log.warning("purge of old drift checks skipped: %s", exc)
            return
        if checks:
            log.info("purged %d drift checks older than the retention", checks)

    async def _watch(self) -> None:
        """Stop when faust has crashed; refresh the lag gauges."""
        if self.app.crashed:
            self._fail("faust", self.app.crash_reason or RuntimeError("faust crashed"))
            return
        assert self._lag is not None
        try:
            await self._lag.update()
        except Exception as exc:  # the lag is informative: never let it stop the processor
            log.warning("lag not updated: %r", exc)

    async def readiness(self) -> Readiness:
        assert self._store is not None
        database = True
        try:
            async with asyncio.timeout(2):
                await self._store.ping()
        except (StoreUnavailable, TimeoutError):
            database = False
        kafka = self._running and not self.app.crashed
        k = self._settings.kafka
        topics = kafka and topics_known(
            self.app, k.predictions_topic, k.feedback_topic, k.shadow_predictions_topic
        )
        database = database and self._database_ready.is_set()  # reachable *and* migrated
        return Readiness({"database": database, "kafka": kafka, "topics": topics})


async def _close_pool(pool: Any) -> None:
    try:
        async with asyncio.timeout(10):
            await pool.close()
    except TimeoutError:
        pool.terminate()


def _log_waiting(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("PostgreSQL went away while migrating (attempt %d): %s", state.attempt_number, exc)
