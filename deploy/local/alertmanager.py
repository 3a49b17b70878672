"""Alertmanager (Debian's package), delivering every alert to the gateway's webhook.

Its configuration is written at each start (``deploy.local.monitoring``); its API key is made
once in the state folder. Clustering is off (one instance, no gossip port to collide).
Run alone with ``python -m deploy.local.alertmanager``.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from deploy.local.child import run_child, wait_ready
from deploy.local.monitoring import (
    alertmanager_config,
    alertmanager_dir,
    answers,
    binary,
    ensure_key,
    write_yaml,
)
from deploy.local.settings import StackSettings

log = logging.getLogger(__name__)


def command(settings: StackSettings) -> list[str]:
    state = alertmanager_dir(settings)
    ensure_key(settings)
    config = write_yaml(state / "alertmanager.yml", alertmanager_config(settings))
    host, port = settings.alertmanager_address
    url = str(settings.alertmanager_url).rstrip("/")
    return [
        binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={config}",
        f"--storage.path={state / 'data'}",
        f"--web.listen-address={host}:{port}",
        f"--web.external-url={url}",
        "--cluster.listen-address=",  # no HA gossip
        "--log.level=warn",
    ]


def main() -> int:
    settings = StackSettings()
    url = str(settings.alertmanager_url).rstrip("/")

    async def initialise(child: subprocess.Popen[bytes]) -> None:
        await wait_ready(child, "Alertmanager", answers(f"{url}/-/ready"))
        log.info("Alertmanager ready at %s", url)

    return run_child(command(settings), initialise=initialise)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
