"""MLflow's registry webhook to the registry watcher, made or brought up to date as the admin.

MLflow (>= 3.3, SQL store) posts a signed ``model_version_alias.created`` the moment an alias
moves (``registry_watcher.webhook`` checks it and polls at once). Only an admin may create or
change a webhook (``mlflow/server/auth``: every webhook call is ``sender_is_admin``), so this
runs with the admin's credential: the local stack at start (``deploy.local.webhook``), compose's
``mlflow-webhook`` job, the Kubernetes ``mlflow-webhook`` Job. Idempotent: the webhook is found
by name (or by URL), and its URL, events, secret and status are set again each time (MLflow
never shows a secret back, so it cannot be compared: setting it is how a rotation lands).

    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD_FILE=... \\
      python -m deploy.mlflow_webhook --url http://registry-watcher:9103/webhooks/mlflow \\
      --secret-file /run/secrets/mlflow_webhook_secret

The MLflow server must allow the address (``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https`` for a
plain-HTTP address inside the cluster, ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true`` for a private
one) and keep secrets under a fixed key (``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``: without one
each server process makes its own and cannot read what another stored).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
)

from runtime.mlflow_credentials import load_password_file
from runtime.secret_files import SecretFileError, read_secret_file

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.webhook import Webhook

log = logging.getLogger("mlflow_webhook")
# It runs in the MLflow image too (beside the server and its admin password), which has only
# the deploy package: hence its own small wait and password-file reading (runtime's otherwise).
WAIT = wait_exponential(multiplier=0.2, max=5.0)

NAME = "reviewstream-registry-watcher"
# What the watcher listens to (registry_watcher.webhook; this module runs in the MLflow image,
# which has no service code).
EVENTS: list[
    Literal["model_version_alias.created", "model_version_alias.deleted", "model_version_tag.set"]
] = [
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_tag.set",  # a version gated: the watcher checks it ahead of its move
]
DESCRIPTION = (
    "alias moves and version tags to the reviewstream registry watcher (a nudge to look at once)"
)


def webhooks(client: MlflowClient) -> list[Webhook]:
    found: list[Webhook] = []
    token = None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def ensure_webhook(client: MlflowClient, *, url: str, secret: str, name: str = NAME) -> Webhook:
    """The webhook ``name`` posting alias events to ``url`` signed with ``secret``, active."""
    same = [w for w in webhooks(client) if w.name == name or w.url == url]
    if not same:
        log.info("creating MLflow webhook %s -> %s", name, url)
        return client.create_webhook(
            name=name, url=url, events=list(EVENTS), description=DESCRIPTION, secret=secret
        )
    keep, *extra = same
    for other in extra:  # one delivery per move, not one per copy
        log.info("deleting the duplicate MLflow webhook %s (%s)", other.name, other.webhook_id)
        client.delete_webhook(other.webhook_id)
    log.info("updating MLflow webhook %s -> %s", name, url)
    return client.update_webhook(
        keep.webhook_id,
        name=name,
        url=url,
        events=list(EVENTS),
        description=DESCRIPTION,
        secret=secret,
        status="ACTIVE",
    )


app = typer.Typer(add_completion=False)


@app.command()
def main(
    url: Annotated[str, typer.Option(help="the watcher's webhook address (…/webhooks/mlflow)")],
    secret_file: Annotated[Path, typer.Option(help="the shared secret (the watcher's too)")],
    name: Annotated[str, typer.Option(help="the webhook's name in MLflow")] = NAME,
    wait_s: Annotated[float, typer.Option(help="how long to wait for MLflow to answer")] = 300,
) -> None:
    """Create or update the watcher's webhook in MLflow (as the admin)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    load_password_file()
    try:
        secret = read_secret_file(secret_file)
    except SecretFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--secret-file") from None
    client = MlflowClient()
    for attempt in Retrying(  # MLflow may still be starting (a job runs beside it)
        stop=stop_after_delay(wait_s),
        wait=WAIT,
        retry=retry_if_not_exception_type(typer.Exit),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    ):
        with attempt:
            try:
                hook = ensure_webhook(client, url=url, secret=secret, name=name)
            except MlflowException as exc:
                if exc.get_http_status_code() < 500:  # type: ignore[no-untyped-call]
                    raise typer.Exit(_say(exc)) from None  # a refusal, not an outage
                raise
    log.info("MLflow webhook %s (%s) posts %s to %s", hook.name, hook.webhook_id, EVENTS, hook.url)


def _say(exc: Exception) -> int:
    log.error("MLflow refused the webhook: %s", exc)
    return 2


if __name__ == "__main__":
    app()
