"""Every service's Prometheus registry: its own ``rs_<service>_*`` metrics plus ``process_*``.

Each service keeps a registry of its own (several gateways may share a test process), so
prometheus_client's default registry, which alone carries the process collector, is never
served. Adding :class:`ProcessCollector` here gives every ``/metrics`` the CPU seconds and
resident memory that the hardware alerts (``deploy/monitoring/rules.yml``) watch.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector


def service_registry() -> CollectorRegistry:
    """A new registry already exporting ``process_cpu_seconds_total``,
    ``process_resident_memory_bytes`` and the other ``process_*`` metrics (Linux)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry
