"""The worker's Prometheus metrics, in a registry of its own (one per worker instance)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from runtime.metrics import service_registry
from runtime.signing import refused_counter

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LOAD_STEPS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCIES = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = service_registry()
        r = self.registry
        self.batches = Counter("rs_worker_batches", "Batches processed", registry=r)
        self.batch_size = Histogram(
            "rs_worker_batch_size", "Records per batch", buckets=BATCH_SIZES, registry=r
        )
        self.inference_seconds = Histogram(
            "rs_worker_inference_seconds",
            "Preprocessing + ONNX Runtime time per batch",
            buckets=LATENCIES,
            registry=r,
        )
        self.predictions = Counter(
            "rs_worker_predictions", "Predictions produced", ["model_version"], registry=r
        )
        self.dead_letters = Counter(
            "rs_worker_dead_letters", "Records sent to the DLQ", ["error_type"], registry=r
        )
        self.errors = Counter(
            "rs_worker_errors",
            "Errors by kind (commit, inference, explain, models_topic, status)",
            ["kind"],
            registry=r,
        )  # fmt: skip
        self.models_refused = refused_counter("worker", r)
        self.model_info = Gauge(
            "rs_worker_model_info", "1 for the model version in service",
            ["model_name", "model_version", "sha256"], registry=r,
        )  # fmt: skip
        self.model_version = Gauge(
            "rs_worker_model_version", "Version number in service (0 = none)", registry=r
        )
        self.model_loads = Counter(
            "rs_worker_model_loads", "Model versions offered, by outcome and failed stage",
            ["outcome", "stage"], registry=r,
        )  # fmt: skip
        self.model_load_failures = Counter(
            "rs_worker_model_load_failures",
            "Failed loads of the wanted version, by stage (retried ones count each attempt)",
            ["stage", "permanent"], registry=r,
        )  # fmt: skip
        self.model_load_seconds = Histogram(
            "rs_worker_model_load_step_seconds",
            "Seconds per step of loading a version (download with sha256, session, reference)",
            ["step"], buckets=LOAD_STEPS, registry=r,
        )  # fmt: skip
        self.model_prefetches = Counter(
            "rs_worker_model_prefetches",
            "Next versions the watcher announced, fetched ahead of their move, by outcome "
            "(fetched, on_disk, refused, failed)", ["outcome"], registry=r,
        )  # fmt: skip
        self.prefetched_version = Gauge(
            "rs_worker_prefetched_model_version",
            "Version number of the bundle fetched ahead of its move (0 = none)", registry=r,
        )  # fmt: skip
        self.wanted_model_version = Gauge(
            "rs_worker_wanted_model_version",
            "Version number the alias names, as heard (differs from model_version while a new "
            "version loads or fails)", registry=r,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "rs_worker_consumer_lag", "Records behind the high watermark, assigned partitions",
            registry=r,
        )  # fmt: skip
        self.assigned_partitions = Gauge(
            "rs_worker_assigned_partitions", "Requests partitions assigned", registry=r
        )
        self.ready = Gauge("rs_worker_ready", "1 when serving", registry=r)
