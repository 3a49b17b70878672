"""``python -m registry_watcher``: announce serving-alias moves on the models topic."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from registry_watcher.service import Watcher
from registry_watcher.settings import Settings
from runtime.startup import quiet_probes

log = logging.getLogger("registry_watcher")


async def main(settings: Settings) -> None:
    async with Watcher(settings) as watcher:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, watcher.stop)
        await watcher.run()


if __name__ == "__main__":
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    quiet_probes()  # no aiokafka errors while Kafka is awaited at start-up
    # A poll that fails should fail fast and be retried by the next poll, not by MLflow's own
    # long retry ladder.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    asyncio.run(main(Settings()))
