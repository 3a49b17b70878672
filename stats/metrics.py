"""Prometheus metrics of the stats processor, in a registry of its own (served on /metrics)."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import Counter, Gauge, Histogram

from runtime.metrics import service_registry
from runtime.signing import refused_counter


class Metrics:
    """What an operator watches: progress, lag, throughput, database retries, dead letters."""

    def __init__(self, *, throughput_window_s: float = 10.0) -> None:
        self.registry = service_registry()
        r = self.registry
        self.models_refused = refused_counter("stats", r)
        self.records = Counter(
            "rs_stats_records",
            "Records processed, by kind (prediction, feedback) and outcome "
            "(stored, duplicate, dead_lettered, ignored: an error reply or an explanation)",
            ["kind", "outcome"],
            registry=r,
        )
        self.labelled = Counter(
            "rs_stats_predictions_labelled",
            "Predictions whose true label was set or corrected (counted in accuracy)",
            registry=r,
        )
        self.dead_letters = Counter(
            "rs_stats_dead_letters",
            "Records sent to a dead-letter topic, by source topic and error type",
            ["topic", "error_type"],
            registry=r,
        )
        self.db_retries = Counter(
            "rs_stats_db_retries",
            "Database writes retried after a transient failure (database away, deadlock)",
            ["kind"],
            registry=r,
        )
        self.db_up = Gauge(
            "rs_stats_db_up",
            "1 when the last database call succeeded, 0 while it fails",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "rs_stats_batch_seconds",
            "Time to store one batch and acknowledge it, retries included",
            ["kind"],
            registry=r,
        )
        self.batch_records = Histogram(
            "rs_stats_batch_records",
            "Records per batch",
            ["kind"],
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.lag = Gauge(
            "rs_stats_consumer_lag",
            "Records in the partition after the group's committed offset",
            ["topic", "partition"],
            registry=r,
        )
        self.purged = Counter(
            "rs_stats_unmatched_feedback_purged",
            "Feedback deleted after waiting longer than the retention for its prediction",
            registry=r,
        )
        self.throughput = Gauge(
            "rs_stats_throughput_records_per_second",
            f"Records processed per second over the last {throughput_window_s:g} s",
            registry=r,
        )
        self.throughput.set_function(self.records_per_second)
        # The drift monitor (stats/monitoring.py): what the alerting rules watch.
        version_feature = ["model_version", "feature"]
        self.drift_score = Gauge(
            "rs_stats_drift_score",
            "PSI of the last window of a feature against the version's reference profile",
            version_feature, registry=r,
        )  # fmt: skip
        self.drift_alarm = Gauge(
            "rs_stats_drift_alarm",
            "1 while the feature's last window differs from the reference (test and size)",
            version_feature, registry=r,
        )  # fmt: skip
        self.live_accuracy = Gauge(
            "rs_stats_live_accuracy",
            "Accuracy over the version's last labelled predictions", ["model_version"],
            registry=r,
        )  # fmt: skip
        self.accuracy_alarm = Gauge(
            "rs_stats_accuracy_alarm",
            "1 while the live accuracy's upper 95% bound is below the reference minus the margin",
            ["model_version"], registry=r,
        )  # fmt: skip
        self.unmonitored = Counter(
            "rs_stats_unmonitored_predictions",
            "Predictions of a version without a reference profile (not watched for drift)",
            ["model_version"], registry=r,
        )  # fmt: skip
        self._window_s = throughput_window_s
        self._recent: deque[tuple[float, int]] = deque()

    def processed(self, count: int) -> None:
        """Count records whose batch has been stored and acknowledged."""
        self._recent.append((time.monotonic(), count))
        self._forget_old()

    def records_per_second(self) -> float:
        self._forget_old()
        return sum(count for _, count in self._recent) / self._window_s

    def _forget_old(self) -> None:
        horizon = time.monotonic() - self._window_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
