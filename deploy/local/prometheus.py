"""Prometheus (Debian's package), its data and generated configuration under the state folder.

Run alone with ``python -m deploy.local.prometheus``; the configuration comes from
``deploy.local.monitoring`` and the rules from ``deploy/monitoring/rules.yml``.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from deploy.local.child import run_child, wait_ready
from deploy.local.monitoring import (
    answers,
    binary,
    prometheus_config,
    prometheus_dir,
    write_targets,
    write_yaml,
)
from deploy.local.settings import StackSettings

log = logging.getLogger(__name__)


def command(settings: StackSettings) -> list[str]:
    state = prometheus_dir(settings)
    targets = write_targets(settings)
    config = write_yaml(state / "prometheus.yml", prometheus_config(settings, targets))
    host, port = settings.prometheus_address
    return [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={state / 'data'}",
        "--storage.tsdb.retention.time=7d",
        f"--web.listen-address={host}:{port}",
        "--web.enable-lifecycle",  # POST /-/reload re-reads the rules
        "--log.level=warn",
    ]


def main() -> int:
    settings = StackSettings()
    url = str(settings.prometheus_url).rstrip("/")

    async def initialise(child: subprocess.Popen[bytes]) -> None:
        await wait_ready(child, "Prometheus", answers(f"{url}/-/ready"))
        log.info("Prometheus ready at %s", url)

    return run_child(command(settings), initialise=initialise)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
