"""The drift monitor's home in the stats processor: which versions are watched, and against what.

Reference profiles come with the ``ModelChanged`` events of the models topic (the registry
watcher reads them from the version's tag). Every prediction batch the processor has stored
is then fed, per model version, to a :class:`stats.drift.DriftMonitor`; predictions of a
version without a profile (older bundles) are counted as unmonitored. Each replica watches
the partitions it holds: keys are random request ids, so each sees a random sample of the
traffic, and the checks scale with the partitions like the rest.

Window state lives in memory: after a restart a version's windows fill again before the next
check (``window`` predictions), which only delays that check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from contracts import KafkaSettings, Message, ModelChanged, Prediction
from inference.monitoring import feature_columns, histograms
from runtime.backoff import backoff
from runtime.kafka import ModelEvents
from runtime.signing import Verifier
from stats.db import PostgresStatsStore
from stats.drift import AccuracyCheck, DriftMonitor, DriftSettings, FeatureDrift, check_accuracy
from stats.metrics import Metrics
from stats.store import DriftCheck, StoreUnavailable

log = logging.getLogger(__name__)


class VersionWatch:
    def __init__(self, event: ModelChanged, settings: DriftSettings) -> None:
        profile = event.profile
        assert profile is not None
        self.accuracy = profile.accuracy
        self.monitor = DriftMonitor(histograms(profile), profile.size, settings)


class Watches:
    """The versions this replica watches, fed with the predictions it stored."""

    def __init__(self, settings: DriftSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._versions: dict[str, VersionWatch] = {}
        self._alarming: set[tuple[str, str]] = set()

    def learn(self, event: ModelChanged) -> None:
        """A version was announced: watch it if it has a profile (its windows start empty)."""
        if event.version in self._versions:
            return
        if event.profile is None:
            log.warning("version %s has no reference profile: unmonitored", event.version)
            return
        self._versions[event.version] = VersionWatch(event, self.settings)
        log.info("watching version %s for drift", event.version)

    def versions(self) -> list[str]:
        return sorted(self._versions)

    def reference_accuracy(self, version: str) -> float | None:
        watch = self._versions.get(version)
        return watch.accuracy if watch is not None else None

    def observe(self, messages: Sequence[Message]) -> list[DriftCheck]:
        """Feed the stored predictions of a batch, as the batch processor decoded them (bad
        records went to the DLQ, error replies and explanations were left out); the checks
        that came due."""
        by_version: dict[str, list[Prediction]] = {}
        for message in messages:
            if isinstance(message, Prediction):
                by_version.setdefault(message.model_version, []).append(message)
        checks: list[DriftCheck] = []
        for version, predictions in by_version.items():
            checks += self._observe(version, predictions)
        return checks

    def _observe(self, version: str, predictions: list[Prediction]) -> list[DriftCheck]:
        watch = self._versions.get(version)
        described = [p for p in predictions if p.features and p.features.unknown_share is not None]
        monitored = described if watch is not None else []
        if unmonitored := len(predictions) - len(monitored):
            self.metrics.unmonitored.labels(version).inc(unmonitored)
        if watch is None or not monitored:
            return []
        due = watch.monitor.add_many(_columns(monitored))
        checks = [self._checked(monitored[d.index], r) for d in due for r in d.results]
        for result in due[-1].results if due else []:  # gauges: the latest check is what counts
            self.metrics.drift_score.labels(version, result.feature).set(result.score)
            self.metrics.drift_alarm.labels(version, result.feature).set(int(result.alarm))
        return checks

    def _checked(self, p: Prediction, result: FeatureDrift) -> DriftCheck:
        labels = (p.model_version, result.feature)
        if result.alarm != (labels in self._alarming):  # log the changes, not every check
            self._alarming ^= {labels}
            log.warning("drift %s: version %s, feature %s: PSI %.3f, p %.2g",
                        "alarm" if result.alarm else "over", *labels, result.score,
                        result.p_value)  # fmt: skip
        return DriftCheck(p.model_version, result.feature, p.predicted_at,
                          self.settings.window, result.score, result.p_value,
                          result.alarm)  # fmt: skip

    def accuracy_checked(self, version: str, check: AccuracyCheck, at: datetime) -> DriftCheck:
        self.metrics.live_accuracy.labels(version).set(check.accuracy)
        self.metrics.accuracy_alarm.labels(version).set(int(check.alarm))
        if check.alarm:
            log.warning("live accuracy of version %s: %.3f over the last %d labelled "
                        "(upper bound %.3f)", version, check.accuracy, check.labelled,
                        check.upper)  # fmt: skip
        return DriftCheck(version, "accuracy", at, check.labelled, check.accuracy, None,
                          check.alarm)  # fmt: skip


class Monitor:
    """Runs the watches inside the processor: follows the models topic, feeds the stored
    predictions, checks live accuracy, and writes every check to ``drift_checks``."""

    def __init__(
        self, settings: DriftSettings, metrics: Metrics, store: PostgresStatsStore
    ) -> None:
        self.watches = Watches(settings, metrics)
        self._settings = settings
        self._store = store
        self._id = f"{socket.gethostname()}-{os.getpid()}"
        self._last_accuracy: dict[str, tuple[int, int]] = {}

    async def follow_models(self, kafka: KafkaSettings, verifier: Verifier) -> None:
        """Learn every version's profile from the models topic, for as long as it runs; the
        monitor is an observer, so a broken connection is retried, never fatal."""
        async for attempt in AsyncRetrying(
            wait=backoff(), retry=retry_if_exception_type(KafkaError), before_sleep=_log_retry
        ):
            with attempt:
                events = ModelEvents(
                    kafka, client_id=f"stats-monitor-{self._id}", verifier=verifier
                )
                await events.start()
                try:
                    while True:
                        for event in await events.fetch(timeout_s=1.0):
                            self.watches.learn(event)
                finally:
                    await events.stop()

    async def stored(self, messages: Sequence[Message]) -> None:
        """A batch of predictions is stored: feed it, and write the checks that came due.
        The checks are derived data: when the database is away they are skipped, not retried."""
        await self._write(self.watches.observe(messages))

    async def check_accuracy(self) -> None:
        s = self._settings
        for version in self.watches.versions():
            reference = self.watches.reference_accuracy(version)
            assert reference is not None
            try:
                correct, labelled = await self._store.recent_labelled(version, s.accuracy_window)
            except StoreUnavailable as exc:
                log.warning("live accuracy not checked: %s", exc)
                return
            if labelled == 0 or self._last_accuracy.get(version) == (correct, labelled):
                continue  # nothing new since the last check
            self._last_accuracy[version] = (correct, labelled)
            check = check_accuracy(correct, labelled, reference=reference,
                                   margin=s.accuracy_margin,
                                   min_labelled=s.accuracy_min_labelled)  # fmt: skip
            now = datetime.now(UTC)
            await self._write([self.watches.accuracy_checked(version, check, now)])

    async def _write(self, checks: list[DriftCheck]) -> None:
        if not checks:
            return
        try:
            async with asyncio.timeout(10):
                await self._store.write_drift(self._id, checks)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("%d drift checks not written: %r", len(checks), exc)


def _columns(predictions: Sequence[Prediction]) -> dict[str, np.ndarray]:
    """The predictions' feature values, a column per feature (their features are set)."""
    n = len(predictions)
    fields = (
        (p.probability for p in predictions),
        (p.label for p in predictions),
        (p.features.words for p in predictions if p.features),
        (p.features.unknown_share for p in predictions if p.features),
    )
    return feature_columns(*(np.fromiter(f, dtype=np.float64, count=n) for f in fields))


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("reading the models topic failed (%r); retrying", error)
