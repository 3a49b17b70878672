"""``python -m workers``: one inference worker; run as many as there are partitions to share."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import uvloop

from runtime.startup import quiet_probes
from workers.service import Worker
from workers.settings import Settings

log = logging.getLogger("workers")


async def main(settings: Settings) -> None:
    async with Worker(settings) as worker:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiokafka logs every refused connection while the broker is away; tenacity reports those.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    quiet_probes()  # and none while Kafka is awaited at start-up


if __name__ == "__main__":
    configure_logging()
    # A failed registry call is retried by the next poll (or by the download's own retries),
    # not by MLflow's long default retry ladder.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = Settings()
    log.info(
        "worker %s for %s@%s, requests %s -> predictions %s",
        settings.worker_id,
        settings.model_name,
        settings.model_alias,
        settings.kafka.requests_topic,
        settings.kafka.predictions_topic,
    )
    uvloop.run(main(settings))
