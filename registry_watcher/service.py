"""The registry watcher: polls where the serving alias points and announces each move.

On start it reads the compacted models topic to learn the last event per model, so a restart
announces only what changed while it was away. Then, every ``poll_interval_s``, it asks the
registry where the alias points and publishes a ModelChanged (keyed by model name, acks=all)
when that differs from the last event. A registry or broker that is away costs a poll, is
logged and counted, and the next poll tries again: the watcher never exits for it.

The health server and the models-topic reader are every service's (``runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from contracts import ModelChanged, encode
from registry_watcher.challengers import Challengers
from registry_watcher.changes import change
from registry_watcher.registry import MlflowRegistry, Registry
from registry_watcher.settings import Settings
from runtime.health import HealthServer, Readiness
from runtime.kafka import ModelEvents, connect, producer, wait_for_kafka
from runtime.metrics import service_registry

log = logging.getLogger(__name__)

SERVICE = "registry_watcher"
NOT_POLLED = "not polled yet"


class WatcherMetrics:
    def __init__(self) -> None:
        self.registry = service_registry()
        r = self.registry
        self.polls = Counter(
            "rs_watcher_polls", "Registry polls by outcome", ["outcome"], registry=r
        )
        self.published = Counter(
            "rs_watcher_events_published", "ModelChanged events sent", ["model_name", "reason"],
            registry=r,
        )  # fmt: skip
        self.publish_errors = Counter(
            "rs_watcher_publish_errors", "ModelChanged events the broker did not take", registry=r
        )
        self.registry_up = Gauge("rs_watcher_registry_up", "1 if the last poll worked", registry=r)
        self.serving_version = Gauge(
            "rs_watcher_serving_version", "Version the alias points at", ["model_name"], registry=r
        )


class Watcher:
    def __init__(self, settings: Settings, *, registry: Registry | None = None) -> None:
        self.settings = settings
        self.metrics = WatcherMetrics()
        self.health = HealthServer(
            service=SERVICE,
            host=settings.host,
            port=settings.port,
            registry=self.metrics.registry,
            readiness=self.readiness,
        )
        self._registry = registry
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._registry_error: str | None = NOT_POLLED
        self._registry_reached = False
        m = self.metrics
        self.challengers = Challengers(settings, published=m.published, errors=m.publish_errors)
        self.published: dict[str, ModelChanged] = {}

    async def __aenter__(self) -> Watcher:
        await self.health.start()
        self._stack.push_async_callback(self.health.stop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping")
            self._stopping.set()

    async def readiness(self) -> Readiness:
        checks = {"kafka": self._producer is not None, "registry": self._registry_error is None}
        if self._producer is None:
            return Readiness(checks, "not connected to Kafka yet")
        if self._registry_error is not None:
            return Readiness(checks, f"registry: {self._registry_error}")
        return Readiness(checks)

    async def run(self) -> None:
        s = self.settings
        registry = self._registry
        if registry is None:
            registry = await asyncio.to_thread(MlflowRegistry, s.mlflow_tracking_uri)
        stopping = self._stopping.is_set
        if not await wait_for_kafka(
            s.kafka, topics=[s.kafka.models_topic], log=log, give_up=stopping
        ):
            log.info("registry watcher stopped")
            return
        events = await connect(
            lambda: ModelEvents(s.kafka, client_id="rs-registry-watcher-catch-up"),
            what=f"models topic {s.kafka.models_topic}",
            give_up=stopping,
        )
        try:
            latest = await events.catch_up()
        finally:
            await events.stop()
        self.published = {
            name: event
            for name, event in latest.items()
            if name in s.model_names and event.alias == s.alias
        }
        for event in self.published.values():
            log.info("models topic: %s@%s is version %s", event.model_name, s.alias, event.version)
        self.challengers.learn(latest)
        self._producer = await connect(
            lambda: producer(s.kafka, client_id="rs-registry-watcher"),
            what="producer",
            give_up=stopping,
        )
        self._stack.push_async_callback(self._producer.stop)
        log.info(
            "watching %s@%s in %s every %.1fs",
            ",".join(s.model_names),
            s.alias,
            s.mlflow_tracking_uri,
            s.poll_interval_s,
        )
        while not self._stopping.is_set():
            await self.poll(registry)
            await self.challengers.poll(self._producer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=s.poll_interval_s)
        log.info("registry watcher stopped")

    async def poll(self, registry: Registry) -> None:
        """Ask once per model; publish what changed."""
        s = self.settings
        for name in s.model_names:
            try:
                current = await asyncio.to_thread(registry.serving, name, s.alias)
            except Exception as exc:
                if self._registry_error == NOT_POLLED:  # at start-up: the stack is still coming up
                    log.info(
                        "waiting for MLflow at %s (%s: %.200s)",
                        s.mlflow_tracking_uri,
                        type(exc).__name__,
                        exc,
                    )
                elif self._registry_error is None:
                    log.warning(
                        "registry unreachable at %s (%s: %s); polling on",
                        s.mlflow_tracking_uri,
                        type(exc).__name__,
                        exc,
                    )
                self._registry_error = f"{type(exc).__name__}: {exc}"
                self.metrics.polls.labels(outcome="error").inc()
                self.metrics.registry_up.set(0)
                return
            if self._registry_error is not None and not self._registry_reached:
                log.info("connected to MLflow at %s", s.mlflow_tracking_uri)
            elif self._registry_error is not None:
                log.info("registry reachable again at %s", s.mlflow_tracking_uri)
            self._registry_reached = True
            self._registry_error = None
            self.metrics.polls.labels(outcome="ok").inc()
            self.metrics.registry_up.set(1)
            if current is not None and current.version.isdigit():
                self.metrics.serving_version.labels(model_name=name).set(int(current.version))
            event = change(self.published.get(name), current)
            if event is not None:
                await self._publish(event)

    async def _publish(self, event: ModelChanged) -> None:
        assert self._producer is not None
        topic = self.settings.kafka.models_topic
        try:
            await self._producer.send_and_wait(topic, encode(event), key=event.model_name.encode())
        except KafkaError as exc:
            self.metrics.publish_errors.inc()
            log.warning("could not publish %s: %s; next poll tries again", event.version, exc)
            return
        self.published[event.model_name] = event
        self.metrics.published.labels(model_name=event.model_name, reason=event.reason).inc()
        log.info(
            "published %s: %s@%s -> version %s (sha256 %s)",
            event.reason,
            event.model_name,
            event.alias,
            event.version,
            event.sha256[:12],
        )
