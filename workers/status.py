"""What this worker tells the fleet: a WorkerStatus on the compacted fleet topic, keyed by its id.

:class:`StatusReporter` holds the current report; the worker changes it (:meth:`loading`,
:meth:`failed`, :meth:`serving`) and :meth:`StatusReporter.run`, a task of its own, publishes it
at once on a change and every ``heartbeat_s`` otherwise, with the lag on the requests topic
measured just before. A send that fails (the broker away) is logged and counted, never raised:
the next heartbeat sends the then-current report, and the consume loop never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts import ModelChanged, WorkerState, WorkerStatus, encode
from contracts.messages import utc_now
from workers.metrics import WorkerMetrics
from workers.models import LoadedModel
from workers.reload import Failure
from workers.settings import Settings

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000  # the contract allows 4096; a traceback-sized reason is cut


class StatusReporter:
    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        *,
        lag: Callable[[], Awaitable[int | None]],
    ) -> None:
        self._topic = settings.kafka.fleet_topic
        self._heartbeat_s = settings.heartbeat_s
        self._metrics = metrics
        self._lag = lag
        self._changed = asyncio.Event()
        self._failing = False  # said "cannot publish" once, until a send works again
        self.status = WorkerStatus(
            worker_id=settings.worker_id,
            model_name=settings.model_name,
            alias=settings.model_alias,
            role="shadow" if settings.shadow else "serving",
            state=WorkerState.STARTING,
            heartbeat_s=settings.heartbeat_s,
            started_at=utc_now(),
        )

    # -- what changed ------------------------------------------------------------------------

    def loading(self, event: ModelChanged, failed_so_far: int) -> None:
        """A load of ``event``'s version begins (``failed_so_far`` attempts failed before)."""
        self._set(
            state=WorkerState.LOADING,
            wanted_version=event.version,
            load_attempts=failed_so_far,
            error=None if failed_so_far == 0 else self.status.error,
        )

    def failed(self, failure: Failure) -> None:
        self._set(
            state=WorkerState.FAILED,
            wanted_version=failure.event.version,
            load_attempts=failure.attempts,
            error=failure.describe()[:MAX_ERROR_CHARS],
        )

    def serving(self, model: LoadedModel, wanted: ModelChanged | None) -> None:
        """``model`` is in service; the failed attempts it took stay in the report (they are
        the retries an operator wants to see), the error goes."""
        self._set(
            state=WorkerState.SERVING
            if wanted is None or wanted.version == model.version
            else WorkerState.LOADING,
            version=model.version,
            sha256=model.sha256,
            wanted_version=wanted.version if wanted is not None else model.version,
            error=None,
        )

    def withdrawn(self) -> None:
        """A shadow worker's challenger was withdrawn: it serves nothing, and wants nothing."""
        self._set(
            state=WorkerState.STARTING, version=None, sha256=None, wanted_version=None, error=None
        )

    def _set(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)
        self._changed.set()

    # -- publishing ----------------------------------------------------------------------------

    async def run(self, producer: AIOKafkaProducer) -> None:
        """Publish now, then on every change and every ``heartbeat_s``, until cancelled."""
        while True:
            self._changed.clear()
            await self.publish(producer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self._heartbeat_s)

    async def stopped(self, producer: AIOKafkaProducer) -> None:
        """Say ``stopped`` once, on a clean stop: the worker no longer holds a promotion up."""
        self._set(state=WorkerState.STOPPED)
        await self.publish(producer)

    async def publish(self, producer: AIOKafkaProducer) -> bool:
        try:
            lag = await self._lag()
        except Exception as exc:  # a lag that cannot be read is unknown, not a reason to stop
            log.debug("consumer lag unknown: %r", exc)
            lag = None
        report = self.status.model_copy(update={"lag": lag, "reported_at": utc_now()})
        try:
            # Bounded: a broker that is away must not hold up the next report for long.
            await asyncio.wait_for(
                producer.send_and_wait(self._topic, encode(report), key=report.worker_id.encode()),
                timeout=max(self._heartbeat_s, 1.0),
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            self._metrics.errors.labels(kind="status").inc()
            log.log(
                logging.DEBUG if self._failing else logging.WARNING,
                "could not publish this worker's status on %s (%r); the next heartbeat retries",
                self._topic,
                exc,
            )
            self._failing = True
            return False
        if self._failing:
            log.info("status published on %s again", self._topic)
        self._failing = False
        return True
