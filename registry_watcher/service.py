"""The registry watcher: the release component. It polls where the serving alias points,
verifies the version, announces each move, and rolls back a version on probation that alerts.

On start it reads the compacted models topic to learn the last event per model, so a restart
announces only what changed while it was away. Then, every ``poll_interval_s``, it asks the
registry where the alias points. A move is shipped (a ModelChanged, keyed by model name,
acks=all) only if the version passed its gates or carries an override, was not rolled back, and
its bundle checks out (sha256, reference outputs); otherwise the fleet stays where it is, and
the version gets a ``release.refused`` tag and the alerts topic a ReleaseRefused alert.
A registry or broker that is away costs a poll, is logged and counted, and the next poll tries
again: the watcher never exits for it.

With ``webhook_secret_file`` set, MLflow's registry webhook (``registry_watcher.webhook``,
``POST /webhooks/mlflow`` on the health server's port) wakes the poll the moment an alias
moves: the registry stays the source of truth, the webhook says "look now" (and, for a move
to the next version checked ahead, "ship it, then look": ``registry_watcher.shortcut``), and
the poll runs on as the safety net. Each step from the poll to the event (lookup, verify,
publish) is timed (``rs_watcher_release_step_seconds``) and logged with the shipped event.

What a move needs is done ahead where it can be: the next version is checked and announced
before the alias names it (``registry_watcher.candidates``), so the move itself costs one
registry lookup and the event; the release tags (``shipped_at``, ``previous_production``) are
written right after the event, off the path to the fleet. A rollback waits for them (an alert
is decided only once the tags of what shipped are written), and a watcher that stopped between
the event and the tags writes them when it starts again.

Beside the polls it reads the alerts topic: a firing alert on the version it shipped, within
``probation_s``, moves the alias back (``registry_watcher.probation``).

The health server and the models-topic reader are every service's (``runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from mlflow.exceptions import MlflowException
from prometheus_client import Counter, Gauge, Histogram
from tenacity import AsyncRetrying, before_sleep_log, retry_if_exception_type

from contracts import Alert, AlertStatus, ModelChanged, encode
from contracts.topics import candidate_alias, models_key
from inference.registry import changed_event
from inference.release import GATES_TAG, AliasMove, now, release_problem, stamp
from registry_watcher.acknowledgement import overdue
from registry_watcher.alerts import alerts_since
from registry_watcher.candidates import SCANNED, candidate
from registry_watcher.challengers import Challengers
from registry_watcher.changes import change
from registry_watcher.probation import rollback_reason
from registry_watcher.registry import MlflowRegistry, Target
from registry_watcher.release import key
from registry_watcher.settings import Settings
from registry_watcher.shortcut import Moves, Unconfirmed, ahead
from registry_watcher.webhook import PATH, Refused, TagEvent, WebhookCheck, concerns
from runtime.backoff import backoff
from runtime.fleet import FleetReader, FleetView
from runtime.health import HealthServer, Readiness
from runtime.kafka import ModelEvents, connect, producer, send_signed, wait_for_kafka
from runtime.metrics import service_registry
from runtime.secret_files import read_secret_file
from runtime.signing import refused_counter
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)

SERVICE = "registry_watcher"
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)
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
        self.refused = Counter(
            "rs_watcher_releases_refused", "Alias moves not shipped (gates, rollback, artifact)",
            ["model_name"], registry=r,
        )  # fmt: skip
        self.models_refused = refused_counter("watcher", r)
        self.webhooks = Counter(
            "rs_watcher_webhooks", "MLflow webhook deliveries by outcome (accepted, gated, "
            "ignored, unsigned, bad_signature, stale, replayed, malformed, off)", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.release_steps = Histogram(
            "rs_watcher_release_step_seconds",
            "Seconds per step of shipping a move (wait: from the webhook to the poll; lookup, "
            "verify, publish; tag: the release tags, written after the event)", ["step"],
            buckets=STEP_BUCKETS, registry=r,
        )  # fmt: skip
        self.bundle_checks = Counter(
            "rs_watcher_bundle_checks", "Bundles downloaded and checked (sha256, reference "
            "outputs), by verdict (fit, unfit)", ["verdict"], registry=r,
        )  # fmt: skip
        self.candidates = Counter(
            "rs_watcher_candidates", "Next versions checked ahead of their move, by outcome "
            "(announced, refused)", ["model_name", "outcome"], registry=r,
        )  # fmt: skip
        self.shortcuts = Counter(
            "rs_watcher_shortcuts", "Signed webhook moves of the serving alias, by path: shipped "
            "(the next version checked ahead, before the lookup), looked_up (the lookup decides); "
            "then the registry's answer on a move shipped: confirmed, corrected; out_of_order (a "
            "delivery built before one heard, or undated: no shortcut)", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.rollbacks = Counter(
            "rs_watcher_rollbacks", "Automatic rollbacks of a version on probation",
            ["model_name", "alert"], registry=r,
        )  # fmt: skip


class Watcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = WatcherMetrics()
        self.health = HealthServer(
            service=SERVICE,
            host=settings.host,
            port=settings.port,
            registry=self.metrics.registry,
            readiness=self.readiness,
            routes=[web.post(PATH, self._on_webhook)],
        )
        self._webhooks = (
            None
            if settings.webhook_secret_file is None
            else WebhookCheck(
                read_secret_file(settings.webhook_secret_file).encode(), settings.webhook_max_age_s
            )
        )
        self._woken_at: float | None = None  # when (perf_counter) a webhook asked for a poll
        self._stack = AsyncExitStack()
        self._supervisor = Supervisor(SERVICE, self.metrics.registry)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # poll now: a rollback moved the alias
        self._producer: AIOKafkaProducer | None = None
        self._registry_error: str | None = NOT_POLLED
        self._registry_reached = False
        m = self.metrics
        self._signer = settings.signing_key.signer()
        self.challengers = Challengers(
            settings, published=m.published, errors=m.publish_errors, signer=self._signer
        )
        self.published: dict[str, ModelChanged] = {}
        # The bundles (model, version, sha256) checked, with the problem found (None: fit): a
        # version's artifact never changes, so it is downloaded once (a candidate checked ahead,
        # or a rollback to it, ships at once), and a check under way is joined, not repeated;
        # per model, the verdict key of the version refused with the alert that said so.
        self._verdicts: dict[tuple[str, str, str], str | None] = {}
        self._checking: dict[tuple[str, str, str], asyncio.Future[str | None]] = {}
        self._refused: dict[str, tuple[tuple[str, ...], Alert]] = {}
        # Per model: when (monotonic) the event now on the models topic was shipped or learned,
        # and whether the fleet's failure to follow it was said already.
        self._shipped_at: dict[str, float] = {}
        self._ack_said: set[tuple[str, str]] = set()
        # Per model: the release tags being written after an event, the candidate announced
        # last, and whether the served version's tags were looked at since the start.
        self._tagging: dict[str, asyncio.Task[None]] = {}
        self.candidates: dict[str, ModelChanged] = {}
        self._tags_checked: set[str] = set()
        self._look_ahead_now = asyncio.Event()  # a version's gates were just recorded
        # The webhook's shortcut (registry_watcher.shortcut): the signed moves heard, per model
        # the next version checked ahead (as the serving alias's event), and the move shipped
        # on the webhook's word that the registry has not confirmed yet.
        self._moves = Moves()
        self._next: dict[str, ModelChanged] = {}
        self._unconfirmed: dict[str, Unconfirmed] = {}

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
            self._wake.set()

    async def readiness(self) -> Readiness:
        checks = {
            "kafka": self._producer is not None,
            "registry": self._registry_error is None,
            "tasks": not self._supervisor.failed,
        }
        if self._supervisor.failed:
            return Readiness(checks, f"background task died: {', '.join(self._supervisor.failed)}")
        if self._producer is None:
            return Readiness(checks, "not connected to Kafka yet")
        if self._registry_error is not None:
            return Readiness(checks, f"registry: {self._registry_error}")
        return Readiness(checks)

    async def run(self) -> None:
        s = self.settings
        registry = await asyncio.to_thread(MlflowRegistry, s.mlflow_tracking_uri)
        stopping = self._stopping.is_set
        # Every topic it reads has a leader before any reader starts: a topic created a moment
        # ago has none yet, and aiokafka logs an ERROR for each fetch it makes meanwhile.
        topics = [s.kafka.models_topic, s.kafka.alerts_topic, s.kafka.fleet_topic]
        if not await wait_for_kafka(s.kafka, topics=topics, log=log, give_up=stopping):
            log.info("registry watcher stopped")
            return
        verifier = s.trusted_keys.verifier(self.metrics.models_refused)  # once, not per retry
        events = await connect(
            lambda: ModelEvents(
                s.kafka, client_id="rs-registry-watcher-catch-up", verifier=verifier
            ),
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
        next_alias = candidate_alias(s.alias)
        self.candidates = {
            name: latest[models_key(name, next_alias)]
            for name in s.model_names
            if models_key(name, next_alias) in latest
        }
        self._producer = await connect(
            lambda: producer(s.kafka, client_id="rs-registry-watcher"),
            what="producer",
            give_up=stopping,
        )
        self._stack.push_async_callback(self._producer.stop)
        self._stack.push_async_callback(self._supervisor.stop)
        self._stack.push_async_callback(self._stop_tagging)
        self._supervisor.start(self._watch_alerts(registry), name="alerts")
        self._supervisor.start(self._watch_fleet(), name="fleet")
        self._supervisor.start(self._watch_candidates(registry), name="candidates")
        log.info(
            "watching %s@%s in %s every %.1fs%s",
            ",".join(s.model_names),
            s.alias,
            s.mlflow_tracking_uri,
            s.poll_interval_s,
            f" and on MLflow's webhook (POST {PATH})" if self._webhooks else " (webhooks off)",
        )
        while not self._stopping.is_set():
            self._wake.clear()
            await self._ship_ahead(registry)
            await self.poll(registry)
            await self.challengers.poll(self._producer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=s.poll_interval_s)
        log.info("registry watcher stopped")

    async def poll(self, registry: MlflowRegistry) -> None:
        """Ask once per model; ship what changed and may ship."""
        s = self.settings
        timings: dict[str, float] = {}
        if self._woken_at is not None:
            timings["wait"] = time.perf_counter() - self._woken_at
            self._woken_at = None
        for name in s.model_names:
            started = time.perf_counter()
            try:
                target = await asyncio.to_thread(registry.target, name, s.alias)
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
            if target is not None and target.event.version.isdigit():
                self.metrics.serving_version.labels(model_name=name).set(int(target.event.version))
            timings["lookup"] = time.perf_counter() - started
            await self._consider(registry, name, target, timings)

    async def _ship_ahead(self, registry: MlflowRegistry) -> None:
        """Ship the webhook's moves to the next version checked ahead before the lookup, which
        follows at once and confirms or corrects them (``registry_watcher.shortcut``)."""
        for name, hint in self._moves.take().items():
            published = self.published.get(name)
            found = ahead(hint, self._next.get(name), published)
            event = None if found is None else change(published, found)
            if event is None or name in self._unconfirmed or name in self._refused:
                self.metrics.shortcuts.labels(outcome="looked_up").inc()
                continue
            shipped_at = now()
            if not await self._publish(event, {"wait": time.perf_counter() - hint.heard_at}):
                continue  # the lookup path tries again
            self._woken_at = None  # its wait is counted
            log.info("shipped %s v%s on the webhook's word (checked ahead); asking the registry",
                     name, event.version)  # fmt: skip
            self.metrics.shortcuts.labels(outcome="shipped").inc()
            unconfirmed = Unconfirmed(event, published, shipped_at)
            self._unconfirmed[name] = unconfirmed
            self._tags_checked.add(name)
            previous = published.version if published else None
            self._tag(registry, name, unconfirmed.confirmed, previous, shipped_at)

    async def _confirm(self, name: str, target: Target | None) -> ModelChanged | None:
        """The registry's answer on a move shipped on the webhook's word: its tags are written
        if it agrees; if not, and it names no version that may ship, what served before is
        announced again. Returns what the release tags should name as served before."""
        unconfirmed = self._unconfirmed.pop(name)
        ships = target is not None and release_problem(target.version) is None
        if ships and unconfirmed.agrees(target):
            unconfirmed.confirmed.set_result(target)
            self.metrics.shortcuts.labels(outcome="confirmed").inc()
            return self.published.get(name)
        log.warning(
            "the registry does not confirm %s v%s shipped on the webhook's word (it names %s, "
            "%s): announcing %s",
            name, unconfirmed.event.version, f"v{target.event.version}" if target else "nothing",
            "which may ship" if ships else "which may not ship",
            "it" if ships else "what served before",
        )  # fmt: skip
        before = unconfirmed.before
        restore = None if before is None else change(self.published.get(name), before)
        if not ships and restore is not None and not await self._publish(restore, {}):
            self._unconfirmed[name] = unconfirmed  # asked again at the next poll
            return before
        unconfirmed.confirmed.set_result(None)  # its tags are not written
        self.metrics.shortcuts.labels(outcome="corrected").inc()
        return before

    async def _consider(
        self,
        registry: MlflowRegistry,
        name: str,
        target: Target | None,
        timings: dict[str, float],
    ) -> None:
        """Ship the version the alias names if it is news and may ship; refuse it once if not."""
        previous = self.published.get(name)  # what the release tags name as served before
        if name in self._unconfirmed:
            previous = await self._confirm(name, target)
        published = self.published.get(name)
        event = change(published, target.event if target is not None else None)
        verdict = key(target.version) if target is not None else None
        if name in self._refused and self._refused[name][0] != verdict:
            await self._resolve_refusal(name)  # the alias left the refused version
        if event is None and target is not None and published is not None:
            self._check_tags(registry, target, published)
        if event is None or target is None or verdict is None:
            return
        if name in self._refused:
            return  # refused, and said so; a new override or tag makes a new verdict
        try:
            problem = release_problem(target.version)
            started = time.perf_counter()
            if problem is None:
                problem = await self._check(registry, event)
            timings["verify"] = time.perf_counter() - started
            if problem is not None:
                await self._refuse(registry, target, problem)
                return
        except Exception as exc:  # the registry or its artifact store is away: poll again
            log.warning(
                "could not verify %s v%s (%s: %s); next poll tries again",
                name, target.event.version, type(exc).__name__, exc,
            )  # fmt: skip
            return
        shipped_at = now()
        if await self._publish(event, timings):
            self._tag(registry, name, target, previous.version if previous else None, shipped_at)
            self._tags_checked.add(name)

    async def _check(self, registry: MlflowRegistry, event: ModelChanged) -> str | None:
        """Why the event's bundle must not ship (download, sha256, reference outputs), or None;
        once per bundle, a check under way joined; raises while the artifact store is away."""
        bundle = (event.model_name, event.version, event.sha256)
        if not self.settings.verify_artifacts:
            return None
        if bundle in self._verdicts:
            return self._verdicts[bundle]
        checking = self._checking.get(bundle)
        if checking is None:
            checking = asyncio.ensure_future(asyncio.to_thread(registry.artifact_problem, event))
            self._checking[bundle] = checking
            checking.add_done_callback(lambda _: self._checking.pop(bundle, None))
        problem = await asyncio.shield(checking)
        if bundle not in self._verdicts:
            self._verdicts[bundle] = problem
            self.metrics.bundle_checks.labels(verdict="fit" if problem is None else "unfit").inc()
        return problem

    def _tag(
        self,
        registry: MlflowRegistry,
        name: str,
        target: Target | asyncio.Future[Target | None],
        previous: str | None,
        shipped_at: str,
    ) -> None:
        """Write the release tags of what just shipped, after the tags of what shipped before,
        retried with backoff until MLflow takes them (a rollback waits for them); for a move
        shipped on the webhook's word, once the registry confirmed it (never, if it did not)."""
        before = self._tagging.get(name)

        async def write() -> None:
            if before is not None:
                await asyncio.wait([before])
            confirmed = target if isinstance(target, Target) else await target
            if confirmed is None:
                return
            started = time.perf_counter()
            async for attempt in AsyncRetrying(
                wait=backoff(),
                retry=retry_if_exception_type(Exception),
                before_sleep=before_sleep_log(log, logging.WARNING),
            ):
                with attempt:
                    await asyncio.to_thread(registry.mark_shipped, confirmed, previous, shipped_at)
            self.metrics.release_steps.labels(step="tag").observe(time.perf_counter() - started)

        self._tagging[name] = asyncio.create_task(write(), name=f"tag-{name}")

    def _check_tags(
        self, registry: MlflowRegistry, target: Target, published: ModelChanged
    ) -> None:
        """Once per model after a start: a version announced whose ``shipped_at`` is missing or
        older than its event (the watcher stopped between the event and its tags, or someone
        else announced it) gets its tags now, as shipped when its event was."""
        name = published.model_name
        if name in self._tags_checked or target.event.version != published.version:
            return
        self._tags_checked.add(name)
        shipped = stamp(target.version.tags.get("shipped_at"))
        announced = published.changed_at.replace(microsecond=0)
        if shipped is not None and shipped >= announced:
            return
        when = announced.isoformat(timespec="seconds")
        log.warning(
            "%s v%s was announced at %s without its release tags; writing them now",
            name, published.version, when,
        )  # fmt: skip
        self._tag(registry, name, target, None, when)

    async def _tags_written(self, name: str) -> None:
        tagging = self._tagging.get(name)
        if tagging is not None:
            await asyncio.wait([tagging])

    async def _stop_tagging(self) -> None:
        # A write cut short is made good at the next start (_check_tags).
        for task in self._tagging.values():
            task.cancel()
        await asyncio.gather(*self._tagging.values(), return_exceptions=True)

    async def _watch_candidates(self, registry: MlflowRegistry) -> None:
        """Check and announce each model's next version ahead of its move, every poll."""
        s = self.settings
        while True:
            for name in s.model_names:
                try:
                    await self._look_ahead(registry, name)
                except Exception as exc:  # the registry is away: the serving poll says so
                    log.debug("no look at %s's next version: %r", name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._look_ahead_now.wait(), timeout=s.poll_interval_s)
            self._look_ahead_now.clear()

    async def _look_ahead(self, registry: MlflowRegistry, name: str) -> None:
        """Check the next version and announce it; then check the versions a move back would
        return to (the one serving, the one before it), which a watcher that started after
        they shipped has not checked yet."""
        serving = self.published.get(name)
        versions = await asyncio.to_thread(registry.newest, name, SCANNED)
        chosen = candidate(versions, serving.version if serving is not None else None)
        if chosen is not None and await self._announce(
            registry, changed_event(chosen, candidate_alias(self.settings.alias))
        ):
            self._next[name] = changed_event(chosen, self.settings.alias)
        elif serving is None or self._next.get(name, serving).version != serving.version:
            # Kept while it is the version serving (a move back and forth again ships it);
            # else it is no longer next (rolled back, its gates changed, a newer one unfit).
            self._next.pop(name, None)
        if serving is None:
            return
        await self._check(registry, serving)
        back = next(
            (
                v.tags.get("previous_production")
                for v in versions
                if str(v.version) == serving.version
            ),
            None,
        )
        for version in versions:
            if str(version.version) == back and release_problem(version) is None:
                await self._check(registry, changed_event(version, self.settings.alias))

    async def _announce(self, registry: MlflowRegistry, event: ModelChanged) -> bool:
        """Announce a checked next version (once: not again while it stays the next one);
        whether its bundle checked out (by this watcher: the webhook's shortcut needs that)."""
        name = event.model_name
        fresh = (name, event.version, event.sha256) not in self._verdicts
        problem = await self._check(registry, event)
        if problem is not None:
            if fresh:
                self.metrics.candidates.labels(model_name=name, outcome="refused").inc()
                log.warning("next version %s v%s does not check out: %s", name, event.version,
                            problem)  # fmt: skip
            return False
        announced = self.candidates.get(name)
        if announced is not None and change(announced, event) is None:
            return True
        assert self._producer is not None
        topic, what = self.settings.kafka.models_topic, models_key(name, event.alias)
        try:
            await send_signed(self._producer, topic, what.encode(), encode(event), self._signer)
        except KafkaError as exc:
            log.warning("could not announce %s -> version %s: %s", what, event.version, exc)
            return True
        self.candidates[name] = event
        self.metrics.candidates.labels(model_name=name, outcome="announced").inc()
        log.info("announced %s -> version %s (checked ahead of its move)", what, event.version)
        return True

    async def _refuse(self, registry: MlflowRegistry, target: Target, problem: str) -> None:
        event = target.event
        was = self.published.get(event.model_name)
        log.error(
            "not shipping %s v%s: %s; the fleet stays on %s",
            event.model_name, event.version, problem, f"v{was.version}" if was else "nothing",
        )  # fmt: skip
        await asyncio.to_thread(registry.mark_refused, target, problem)
        alert = Alert(
            name="ReleaseRefused",
            status=AlertStatus.FIRING,
            severity="critical",
            labels={
                "model_name": event.model_name,
                "model_version": event.version,
                "alias": event.alias,
            },
            summary=f"{event.model_name}@{event.alias} names v{event.version}, which was not "
            f"shipped; the fleet stays on {f'v{was.version}' if was else 'nothing'}",
            description=problem,
            starts_at=datetime.now(UTC),
            fingerprint=f"release-refused:{event.model_name}:{event.version}"[-128:],
        )
        if await self._send_alert(alert):
            self.metrics.refused.labels(model_name=event.model_name).inc()
            self._refused[event.model_name] = (key(target.version), alert)

    async def _resolve_refusal(self, name: str) -> None:
        _, alert = self._refused[name]
        now = datetime.now(UTC)
        resolved = alert.model_copy(
            update={"status": AlertStatus.RESOLVED, "ends_at": now, "received_at": now}
        )
        if await self._send_alert(resolved):
            del self._refused[name]

    async def _watch_alerts(self, registry: MlflowRegistry) -> None:
        """Roll back a version on probation that an alert names, for the life of the watcher."""
        s = self.settings
        while True:
            try:
                async for alert in alerts_since(
                    s.kafka, lookback_s=s.probation_s, client_id="rs-registry-watcher-alerts"
                ):
                    await self._on_alert(registry, alert)
            except (KafkaError, OSError) as exc:
                log.warning("reading %s failed (%r); reading it again", s.kafka.alerts_topic, exc)
                await asyncio.sleep(1)

    async def _on_alert(self, registry: MlflowRegistry, alert: Alert) -> None:
        s = self.settings
        if alert.status != AlertStatus.FIRING or alert.name not in s.rollback_on:
            return
        for name in s.model_names:
            await self._tags_written(name)  # probation is read from what shipped
            # An alert must not be lost to an MLflow outage: wait for the registry.
            async for attempt in AsyncRetrying(
                wait=backoff(), retry=retry_if_exception_type((MlflowException, OSError))
            ):
                with attempt:
                    outcome = await asyncio.to_thread(self._roll_back_if_due, registry, name, alert)
            if outcome is None:
                continue
            moved, reason = outcome
            log.warning(
                "rolled back %s@%s from v%s to v%s: %s",
                name, s.alias, moved.previous, moved.version, reason,
            )  # fmt: skip
            self.metrics.rollbacks.labels(model_name=name, alert=alert.name).inc()
            self._next.pop(name, None)  # its tags changed: looked at again before a shortcut
            await self._send_alert(
                Alert(
                    name="ModelRolledBack",
                    status=AlertStatus.FIRING,
                    severity="warning",
                    labels={
                        "model_name": name,
                        "model_version": str(moved.previous),
                        "restored_version": moved.version,
                        "alias": s.alias,
                    },
                    summary=f"{name}@{s.alias} rolled back from v{moved.previous} to "
                    f"v{moved.version}",
                    description=reason,
                    starts_at=datetime.now(UTC),
                    fingerprint=f"rolled-back:{name}:{moved.previous}"[-128:],
                )
            )
            self._wake.set()  # announce the rollback now, not at the next poll

    async def _watch_fleet(self) -> None:
        """Say FleetNotAcknowledging (on the alerts topic, where the rollback reads it) when live
        workers do not serve a shipped version ``ack_deadline_s`` after it shipped."""
        s = self.settings
        while True:
            reader = FleetReader(s.kafka, client_id="rs-registry-watcher-fleet")
            try:
                await reader.start()
                try:
                    view = await reader.catch_up()
                    while True:
                        await self._check_fleet(view)
                        view = await reader.read(timeout_s=1.0)
                finally:
                    await reader.stop()
            except (KafkaError, OSError) as exc:
                log.warning("reading %s failed (%r); reading it again", s.kafka.fleet_topic, exc)
                await asyncio.sleep(1)

    async def _check_fleet(self, view: FleetView) -> None:
        for name, event in list(self.published.items()):
            if (name, event.version) in self._ack_said:
                continue
            waited = time.monotonic() - self._shipped_at.setdefault(name, time.monotonic())
            late = overdue(view, event, waited_s=waited, deadline_s=self.settings.ack_deadline_s)
            if late is not None and await self._send_alert(late.alert()):
                log.warning("%s", late.alert().summary)
                self._ack_said.add((name, event.version))

    def _roll_back_if_due(
        self, registry: MlflowRegistry, name: str, alert: Alert
    ) -> tuple[AliasMove, str] | None:
        """Blocking: the rollback ``alert`` calls for, done; None when it calls for none."""
        s = self.settings
        target = registry.target(name, s.alias)
        if target is None:
            return None
        reason = rollback_reason(
            alert,
            target.version,
            rollback_on=s.rollback_on,
            probation_s=s.probation_s,
            now=datetime.now(UTC),
        )
        if reason is None:
            return None
        return registry.roll_back(name, s.alias, reason), reason

    async def _send_alert(self, alert: Alert) -> bool:
        assert self._producer is not None
        try:
            await self._producer.send_and_wait(
                self.settings.kafka.alerts_topic, encode(alert), key=alert.fingerprint.encode()
            )
        except KafkaError as exc:
            log.warning("could not publish the %s alert: %s; trying again later", alert.name, exc)
            return False
        return True

    async def _publish(self, event: ModelChanged, timings: dict[str, float]) -> bool:
        assert self._producer is not None
        topic = self.settings.kafka.models_topic
        started = time.perf_counter()
        try:
            await send_signed(
                self._producer, topic, event.model_name.encode(), encode(event), self._signer
            )
        except KafkaError as exc:
            self.metrics.publish_errors.inc()
            log.warning("could not publish %s: %s; next poll tries again", event.version, exc)
            return False
        timings["publish"] = time.perf_counter() - started
        self.published[event.model_name] = event
        self._shipped_at[event.model_name] = time.monotonic()
        self._look_ahead_now.set()  # the next version is counted from this one now
        self.metrics.published.labels(model_name=event.model_name, reason=event.reason).inc()
        for step, seconds in timings.items():
            self.metrics.release_steps.labels(step=step).observe(seconds)
        log.info(
            "published %s: %s@%s -> version %s (sha256 %s) in %.3f s (%s)",
            event.reason,
            event.model_name,
            event.alias,
            event.version,
            event.sha256[:12],
            sum(timings.values()),
            ", ".join(f"{step} {seconds:.3f} s" for step, seconds in timings.items()),
        )
        return True

    async def _on_webhook(self, request: web.Request) -> web.Response:
        """MLflow's webhook: wake the poll on a valid move of a followed alias, and the look at
        the next version on a version gated; a delivery that is unsigned, badly signed, stale or
        replayed is refused (401) and counted."""
        count = self.metrics.webhooks.labels
        if self._webhooks is None:
            count(outcome="off").inc()
            return web.json_response(
                {"error": "webhooks_off",
                 "detail": "RS_WATCHER_WEBHOOK_SECRET_FILE is not set: polling only"},
                status=404,
            )  # fmt: skip
        body = await request.read()
        try:
            event = self._webhooks.verify(request.headers, body)
        except Refused as exc:
            count(outcome=exc.reason).inc()
            log.warning("refused a webhook from %s: %s (%s)", request.remote, exc.reason, exc)
            return web.json_response({"error": exc.reason, "detail": str(exc)}, status=exc.status)
        s = self.settings
        if isinstance(event, TagEvent):
            if event.model_name not in s.model_names or event.key != GATES_TAG:
                count(outcome="ignored").inc()
                return web.json_response({"status": "ignored"})
            count(outcome="gated").inc()
            log.info("webhook: %s v%s gated; looking at the next version now",
                     event.model_name, event.version)  # fmt: skip
            self._look_ahead_now.set()
            return web.json_response({"status": "looking"}, status=202)
        if event is None or not concerns(event, s.model_names, [s.alias, *s.shadow_aliases]):
            count(outcome="ignored").inc()
            return web.json_response({"status": "ignored"})
        count(outcome="accepted").inc()
        if event.alias == s.alias and not self._moves.heard(event, time.perf_counter()):
            self.metrics.shortcuts.labels(outcome="out_of_order").inc()
        log.info(
            "webhook: %s@%s %s; polling now",
            event.model_name,
            event.alias,
            f"moved to version {event.version}" if event.version else "deleted",
        )
        if self._woken_at is None:
            self._woken_at = time.perf_counter()
        self._wake.set()
        return web.json_response({"status": "polling"}, status=202)
