"""After a promotion: wait until every live worker serves the new version (the fleet topic).

``python -m export promote 7 --wait-s 60`` moves the alias, then reads the fleet topic with
``runtime.fleet`` until :func:`~runtime.fleet.acknowledged` holds or the time is up. The
workers report what they serve every few seconds, so the wait ends soon after the last one
swapped the version in; a worker that stays on the old version (it fails to load the new one,
or never heard of it) is named.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka.errors import KafkaError

from contracts import KafkaSettings
from runtime.fleet import FleetReader, acknowledged


@dataclass(frozen=True)
class FleetAnswer:
    done: bool
    pending: list[str]  # live workers that do not serve the version (at the deadline)
    waited_s: float
    error: str | None = None  # Kafka did not answer

    def describe(self, version: str) -> str:
        if self.done:
            return f"every live worker serves v{version} ({self.waited_s:.1f}s)"
        if self.error is not None:
            return f"could not read the fleet topic: {self.error}"
        if not self.pending:
            return f"no live worker reported within {self.waited_s:.0f}s"
        return (
            f"not acknowledged within {self.waited_s:.0f}s: "
            f"{', '.join(self.pending)} not on v{version}"
        )


async def wait_for_fleet(
    kafka: KafkaSettings, model_name: str, alias: str, version: str, *, timeout_s: float
) -> FleetAnswer:
    started = time.monotonic()
    pending: list[str] = []
    reader = FleetReader(kafka, client_id="rs-export-fleet")
    try:
        async with asyncio.timeout(timeout_s):
            await reader.start()
            try:
                view = await reader.catch_up(timeout_s=1)
                while True:
                    done, pending = acknowledged(view, model_name, alias, version)
                    if done:
                        return FleetAnswer(True, [], time.monotonic() - started)
                    view = await reader.read(timeout_s=1)
            finally:
                await reader.stop()
    except TimeoutError:
        return FleetAnswer(False, pending, time.monotonic() - started)
    except (KafkaError, OSError) as exc:
        return FleetAnswer(False, pending, time.monotonic() - started, error=repr(exc))
