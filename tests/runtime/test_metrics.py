"""Every service's /metrics carries process_* (CPU, memory): the hardware alerts need them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import Metrics as GatewayMetrics
from registry_watcher.service import WatcherMetrics
from stats.metrics import Metrics as StatsMetrics
from workers.metrics import WorkerMetrics


@pytest.mark.parametrize(
    "make", [WorkerMetrics, WatcherMetrics, StatsMetrics, GatewayMetrics], ids=lambda m: m.__name__
)
def test_each_service_registry_exports_process_metrics(make: type) -> None:
    registry: CollectorRegistry = make().registry
    text = generate_latest(registry).decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
        assert f"\n{name} " in text, name
    assert (registry.get_sample_value("process_resident_memory_bytes") or 0) > 10 * 2**20
