"""``python -m export``: move the serving alias by hand, and show where a version came from.

    python -m export promote 7 --reason "reviewed the gate report"
    python -m export promote 7 --reason "..." --wait-s 60   # until every live worker serves it
    python -m export rollback --reason "complaints about v7"
    python -m export lineage 7          # or without a version: the one the alias names

Settings: ``RS_EXPORT_MODEL_NAME``, ``RS_EXPORT_ALIAS``, ``MLFLOW_TRACKING_URI`` (and the
``RS_KAFKA_*`` settings for ``--wait-s``, which reads the fleet topic).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from mlflow import MlflowClient

from contracts import KafkaSettings
from export.fleet import wait_for_fleet
from export.lineage import lineage, render
from export.registry import RegistryError, current, promote, rollback, who
from export.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _client(settings: Settings) -> MlflowClient:
    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="model version to serve")],
    reason: Annotated[str, typer.Option(help="why; recorded on the version")],
    by: Annotated[str | None, typer.Option(help="who; default user@host")] = None,
    wait_s: Annotated[
        float,
        typer.Option(
            help="then wait up to this long for every live worker to serve it (exit 2 if not)"
        ),
    ] = 0,
) -> None:
    """Point the serving alias at VERSION, if every one of its gates passed."""
    settings = Settings()
    try:
        moved = promote(
            _client(settings),
            settings.model_name,
            version,
            alias=settings.alias,
            by=by or who(),
            reason=reason,
        )
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    was = f"v{moved.previous}" if moved.previous else "none"
    typer.echo(f"{moved.model_name} '{moved.alias}' -> v{moved.version} (was {was})")
    if wait_s > 0:
        answer = asyncio.run(
            wait_for_fleet(
                KafkaSettings(), moved.model_name, moved.alias, moved.version, timeout_s=wait_s
            )
        )
        typer.echo(answer.describe(moved.version), err=not answer.done)
        if not answer.done:
            raise typer.Exit(2)


@app.command("rollback")
def rollback_command(
    reason: Annotated[str, typer.Option(help="why; recorded on both versions")],
    by: Annotated[str | None, typer.Option(help="who; default user@host")] = None,
) -> None:
    """Point the serving alias back at the version that served before the current one."""
    settings = Settings()
    try:
        moved = rollback(
            _client(settings),
            settings.model_name,
            alias=settings.alias,
            by=by or who(),
            reason=reason,
        )
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{moved.model_name} '{moved.alias}' -> v{moved.version} "
        f"(rolled back from v{moved.previous})"
    )


@app.command("lineage")
def lineage_command(
    version: Annotated[
        str | None, typer.Argument(help="model version; default: the one the alias names")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print a version's run, data digests and files, code commit, parameters and gates."""
    settings = Settings()
    client = _client(settings)
    try:
        if version is None:
            serving = current(client, settings.model_name, settings.alias)
            if serving is None:
                raise RegistryError(f"{settings.model_name} has no '{settings.alias}' version")
            version = str(serving.version)
        info = lineage(client, settings.model_name, version)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(info, indent=1) if as_json else render(info))


if __name__ == "__main__":
    app()
