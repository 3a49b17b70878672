"""``python -m deploy.local``: run the whole local stack under honcho until Ctrl-C.

Kafka, PostgreSQL, MLflow, Prometheus and Alertmanager start here unless their settings point at
another host (or ``RS_STACK_MONITORING=false`` for the last two); the reviewstream services start
beside them and wait for what they need. On a first start with an
empty registry, ``deploy.local.bootstrap`` trains and promotes the fast model, so the chat UI
answers with nothing else typed. Everything persists in the state folder, so running it again
reuses data, jars and registered models.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from honcho.manager import Manager

from deploy import mlflow_access
from deploy.local.database_roles import role_passwords, service_env
from deploy.local.mlflow_server import credentials_dir, webhook_secret_path
from deploy.local.monitoring import ensure_key, gateway_keys_env
from deploy.local.ports import check_free
from deploy.local.settings import StackSettings
from deploy.local.signing import signing_env

# The reviewstream services, each runnable alone as `python -m <package>`.
SERVICES: list[str] = ["workers", "registry_watcher", "stats", "gateway"]
# Who each process is to MLflow (deploy.mlflow_access.USERS): the first start's model is
# trained, registered and promoted by the bootstrap's training run.
MLFLOW_USERS: dict[str, str] = {
    "workers": "worker",
    "registry_watcher": "watcher",
    "bootstrap": "trainer",
    # Only the admin may create MLflow webhooks (deploy.local.webhook).
    "webhook": mlflow_access.ADMIN,
}

app = typer.Typer(add_completion=False)


def infrastructure(settings: StackSettings) -> dict[str, str]:
    """The processes of the stack's third-party servers, after checking their ports."""
    python = sys.executable
    processes = {}
    if settings.runs_postgres:
        host, port = settings.database_address
        check_free(host, port, what="PostgreSQL", setting="DATABASE_URL")
        processes["postgres"] = f"{python} -m deploy.local.postgres"
    if settings.runs_kafka:
        peers = len(settings.kafka_nodes) > 1
        for node in settings.kafka_nodes:
            peer = peers and node.id > 1
            name = f"Kafka node {node.id}" if peers else "Kafka"
            check_free(node.host, node.port, what=name, setting="RS_KAFKA_BOOTSTRAP_SERVERS")
            check_free(
                node.host,
                node.controller_port,
                what=f"the controller of {name}" if peers else "the Kafka controller",
                setting="RS_STACK_KAFKA_PEER_CONTROLLER_PORTS"
                if peer
                else "RS_STACK_KAFKA_CONTROLLER_PORT",
            )
        processes["kafka"] = f"{python} -m deploy.local.kafka"
    if settings.runs_mlflow:
        host, port = settings.mlflow_address
        check_free(host, port, what="MLflow", setting="MLFLOW_TRACKING_URI")
        processes["mlflow"] = f"{python} -m deploy.local.mlflow_server"
    if settings.runs_prometheus:
        host, port = settings.prometheus_address
        check_free(host, port, what="Prometheus", setting="RS_STACK_PROMETHEUS_URL")
        processes["prometheus"] = f"{python} -m deploy.local.prometheus"
    if settings.runs_alertmanager:
        host, port = settings.alertmanager_address
        check_free(host, port, what="Alertmanager", setting="RS_STACK_ALERTMANAGER_URL")
        processes["alertmanager"] = f"{python} -m deploy.local.alertmanager"
    return processes


def services(settings: StackSettings) -> dict[str, str]:
    """The reviewstream services, and the first start's model unless turned off."""
    processes = {name: f"{sys.executable} -m {name}" for name in SERVICES}
    if settings.bootstrap_model:
        # A first start with an empty registry trains a model; later ones only check.
        processes["bootstrap"] = f"{sys.executable} -m deploy.local.bootstrap"
    if settings.runs_mlflow:
        # The stack's MLflow posts alias moves to the watcher (it polls without them too).
        processes["webhook"] = f"{sys.executable} -m deploy.local.webhook"
    return processes


@app.command()
def up(
    infra_only: Annotated[
        bool,
        typer.Option(
            "--infra-only",
            help="Kafka, PostgreSQL, MLflow, Prometheus and Alertmanager without the services",
        ),
    ] = False,
) -> None:
    """Run the stack in the foreground; Ctrl-C stops everything cleanly."""
    settings = StackSettings()
    processes = infrastructure(settings)
    lines = [
        "reviewstream stack",
        f"  Kafka:      {settings.kafka.bootstrap_servers}",
        f"  PostgreSQL: {_redacted(settings.database.url.get_secret_value())}",
        f"  MLflow UI:  {settings.mlflow_tracking_uri}",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    credentials: dict[str, Path] = {}
    if settings.runs_mlflow:
        # Made before anything starts: the services read their password files at start-up.
        credentials = mlflow_access.ensure_password_files(credentials_dir(settings))
        lines.append(
            f"              sign in as people (reads everything; password in "
            f"{credentials['people']}), or admin ({credentials[mlflow_access.ADMIN]})"
        )
    if settings.runs_prometheus:
        lines.append(
            f"  Prometheus: {settings.prometheus_url} (alerts: /alerts, targets: /targets)"
        )
    if settings.runs_alertmanager:
        lines.append(f"  Alertmanager: {settings.alertmanager_url}")
        # The gateway accepts Alertmanager's key (admin), made once in the state folder.
        record = ensure_key(settings)
        env["RS_GATEWAY_API_KEYS"] = gateway_keys_env(record, env.get("RS_GATEWAY_API_KEYS"))
    if not infra_only:
        from gateway.settings import Settings as GatewaySettings

        gateway = GatewaySettings()
        check_free(gateway.host, gateway.port, what="the gateway", setting="RS_GATEWAY_PORT")
        base = f"{'https' if gateway.tls else 'http'}://{gateway.host}:{gateway.port}"
        lines += [
            f"  Chat UI:    {base}/",
            f"  REST API:   {base}/v1 (OpenAPI: {base}/openapi.json)",
        ]
        processes |= services(settings)
    if settings.runs_postgres:
        role_passwords(settings.state_dir)  # made before any process that reads them starts
    lines += [f"  state:      {settings.state_dir.resolve()}", "Ctrl-C stops everything."]
    typer.echo("\n".join(lines))
    manager = Manager()
    service_names = set(services(settings))
    database_url = settings.database.url.get_secret_value()
    for name, command in processes.items():
        own = env
        if name in service_names and settings.runs_postgres:
            # Each service connects as its own role (stats.roles), never as the owner.
            own = service_env(name, env, database_url, settings.state_dir)
        own = own | signing_env(settings, name) | mlflow_env(name, credentials)
        if name == "registry_watcher" and settings.runs_mlflow:
            own = own | {"RS_WATCHER_WEBHOOK_SECRET_FILE": str(webhook_secret_path(settings))}
        manager.add_process(name, command, env=own)
    manager.loop()
    raise typer.Exit(manager.returncode or 0)


def mlflow_env(process: str, credentials: dict[str, Path]) -> dict[str, str]:
    """The MLflow user and password file of a process of the stack (none for those that do not
    talk to MLflow, or when MLflow is not the stack's own)."""
    user = MLFLOW_USERS.get(process)
    if user is None or not credentials:
        return {}
    return {
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD_FILE": str(credentials[user]),
    }


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return parts.geturl()


if __name__ == "__main__":
    app()
