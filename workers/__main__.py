"""``python -m workers``: one inference worker; run as many as there are partitions to share."""

from __future__ import annotations

import logging

from runtime.process import serve
from workers.service import Worker
from workers.settings import Settings

log = logging.getLogger("workers")


def make() -> Worker:
    settings = Settings()
    log.info(
        "%s worker %s for %s@%s, requests %s -> %s",
        settings.role,
        settings.worker_id,
        settings.model_name,
        settings.model_alias,
        settings.kafka.requests_topic,
        settings.answers_topic,
    )
    return Worker(settings)


if __name__ == "__main__":
    serve(make, name="workers")
