"""``python -m stats``: the statistics stream processor, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from runtime.startup import quiet_probes
from stats.service import ProcessorFailed, StatsService
from stats.settings import Settings

log = logging.getLogger("stats")


async def main(settings: Settings) -> None:
    async with StatsService(settings) as service:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service.stop)
        await service.run()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # faust, mode and aiokafka narrate every start, stop and group join at INFO; keep their
    # warnings, and no aiokafka errors while Kafka is awaited at start-up.
    for noisy in ("faust", "mode", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_probes()
    try:
        asyncio.run(main(Settings()))
    except ProcessorFailed as exc:
        log.error("stopped after a failure: %s", exc)
        sys.exit(1)
