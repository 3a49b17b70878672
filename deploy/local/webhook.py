"""The local stack's MLflow webhook to its registry watcher, made at start as MLflow's admin.

Waits for MLflow, then creates or updates the webhook (``deploy.mlflow_webhook``) to the
watcher's ``/webhooks/mlflow`` on the address its settings name, signed with the secret the
stack made in the state folder (the watcher reads the same file). honcho stops the whole stack
when a process exits, so this one then idles until the stack stops, as the bootstrap does.
Run alone with ``python -m deploy.local.webhook``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from deploy.local.mlflow_server import webhook_secret_path
from deploy.local.settings import StackSettings
from deploy.mlflow_webhook import ensure_webhook
from registry_watcher.settings import Settings as WatcherSettings
from registry_watcher.webhook import PATH
from runtime.mlflow_credentials import load_password_file
from runtime.secret_files import read_secret_file
from runtime.startup import http_ok, wait_for

log = logging.getLogger("webhook")

ANY_ADDRESS = {"0.0.0.0", "::", ""}  # noqa: S104 - names of a bind, not one


def watcher_url(watcher: WatcherSettings) -> str:
    host = "127.0.0.1" if watcher.host in ANY_ADDRESS else watcher.host
    return f"http://{host}:{watcher.port}{PATH}"


def main() -> int:
    settings = StackSettings()
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    uri = settings.mlflow_tracking_uri
    load_password_file()
    if asyncio.run(
        wait_for(
            "MLflow",
            uri,
            http_ok(f"{uri.rstrip('/')}/health"),
            log=log,
            retry_on=OSError,
            give_up=stopping.is_set,
        )
    ):
        url = watcher_url(WatcherSettings())
        secret = read_secret_file(webhook_secret_path(settings))
        try:
            ensure_webhook(MlflowClient(uri, uri), url=url, secret=secret)
            log.info("MLflow posts alias moves to the registry watcher at %s", url)
        except MlflowException as exc:
            # Exiting would stop the whole stack (honcho): the watcher polls on without it.
            log.error("could not set MLflow's webhook (%s); the watcher polls on", exc)
    stopping.wait()
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
