"""The gateway's readiness: what classification needs (Kafka, live background tasks).

One check serves both doors: ``/readyz`` on the API port (admin) and on the operations port
(the probes). A database outage shows as ``degraded`` and costs only the statistics.
"""

from __future__ import annotations

import asyncio

from gateway.bus import RequestBus
from gateway.statistics import StatsStore
from runtime.health import Readiness, ReadinessCheck, Recent
from runtime.tasks import Supervisor


def readiness_check(
    bus: RequestBus, stats: StatsStore, supervisor: Supervisor, *, cache_s: float
) -> ReadinessCheck:
    async def dependencies() -> tuple[bool, bool]:
        kafka, database = await asyncio.gather(bus.check(), stats.check())
        return kafka, database

    # A probe flood must not become a flood of Kafka metadata requests and database queries.
    checked = Recent(dependencies, max_age_s=cache_s)

    async def readiness() -> Readiness:
        kafka, database = await checked()
        died = supervisor.failed
        return Readiness(
            {"kafka": kafka, "database": database, "background_tasks": not died},
            f"background tasks died: {', '.join(died)}" if died else None,
            optional=frozenset({"database"}),
        )

    return readiness
