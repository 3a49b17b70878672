"""``python -m export``: move the serving alias by hand, and show where a version came from.

    python -m export promote 7 --reason "reviewed the gate report"
    python -m export promote 8 --override --reason "known gate flake, approved by J."
    python -m export promote 7 --reason "..." --wait-s 60   # until every live worker serves it
    python -m export rollback --reason "complaints about v7"
    python -m export lineage 7          # or without a version: the one the alias names
    python -m export lineage 7 --reproduce   # train it again as recorded, compare the figures
    python -m export shadow 8 --reason "try the new tokenizer on live traffic"
    python -m export shadow --stop --reason "seen enough"

Settings: ``RS_EXPORT_MODEL_NAME``, ``RS_EXPORT_ALIAS``, ``RS_EXPORT_CHALLENGER_ALIAS``,
``MLFLOW_TRACKING_URI`` (signed in as ``MLFLOW_TRACKING_USERNAME``, the password in
``MLFLOW_TRACKING_PASSWORD`` or the file ``MLFLOW_TRACKING_PASSWORD_FILE``); promotion's
shadow requirement: ``RS_EXPORT_SHADOW_MIN_LABELLED``, ``RS_EXPORT_SHADOW_MIN_S`` (0: none)
and ``DATABASE_URL`` (the statistics database, also read by the live replay gate); the
``RS_KAFKA_*`` settings for the live replay gate and for ``--wait-s``, which reads the fleet
topic.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from mlflow import MlflowClient

from export.fleet import wait_for_fleet
from export.gates import Gate
from export.lineage import lineage, render
from export.registry import (
    NotPromotable,
    RegistryError,
    current,
    promote,
    record_gate,
    rollback,
    who,
)
from export.replay import replay_gate
from export.settings import Settings
from export.shadow import shadow, stop_shadow
from export.shadow_requirement import ShadowRequirementError, shadow_record, unmet
from inference import OnnxPredictor
from inference.registry import changed_event, download_bundle
from inference.release import get_version
from runtime.mlflow_credentials import load_password_file

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def main() -> None:
    """Promote, roll back, shadow and trace model versions in the MLflow registry."""
    load_password_file()  # MLflow's password, from MLFLOW_TRACKING_PASSWORD_FILE when set


def _client(settings: Settings) -> MlflowClient:
    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="model version to serve")],
    reason: Annotated[str, typer.Option(help="why; recorded on the version")],
    by: Annotated[str | None, typer.Option(help="who; default user@host")] = None,
    override: Annotated[
        bool,
        typer.Option(
            "--override",
            help="ship it although its gates failed or it was rolled back (recorded, with the"
            " reason, on the version and in its lineage)",
        ),
    ] = False,
    wait_s: Annotated[
        float,
        typer.Option(
            help="then wait up to this long for every live worker to serve it (exit 2 if not)"
        ),
    ] = 0,
) -> None:
    """Point the serving alias at VERSION, if every one of its gates passed, the live replay
    gate included (scored now when DATABASE_URL is set)."""
    settings = Settings()
    client = _client(settings)
    try:
        if not override:
            _shadowed_enough(settings, version)
        gate = live_gate(client, settings, version)
        if gate is not None:
            typer.echo(f"gate {gate.name}: {gate.status} - {gate.detail}")
        moved = promote(
            client,
            settings.model_name,
            version,
            alias=settings.alias,
            by=by or who(),
            reason=reason,
            override=override,
        )
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    was = f"v{moved.previous}" if moved.previous else "none"
    typer.echo(f"{moved.model_name} '{moved.alias}' -> v{moved.version} (was {was})")
    _end_shadow_of_promoted(settings, moved.version, by=by or who())
    if wait_s > 0:
        answer = asyncio.run(
            wait_for_fleet(
                settings.kafka, moved.model_name, moved.alias, moved.version, timeout_s=wait_s
            )
        )
        typer.echo(answer.describe(moved.version), err=not answer.done)
        if not answer.done:
            raise typer.Exit(2)


def _shadowed_enough(settings: Settings, version: str) -> None:
    """Raise NotPromotable unless the version met the shadow requirement (when one is set)."""
    s = settings
    if not s.shadow_min_labelled and not s.shadow_min_s:
        return
    if s.database_url is None:
        raise RegistryError(
            "RS_EXPORT_SHADOW_MIN_LABELLED/RS_EXPORT_SHADOW_MIN_S require a shadow period, "
            "but DATABASE_URL (the statistics database) is not set"
        )
    url = s.database_url.get_secret_value()
    try:
        record = asyncio.run(shadow_record(url, s.model_name, version))
    except ShadowRequirementError as exc:
        raise RegistryError(f"the shadow requirement cannot be checked: {exc}") from None
    reasons = unmet(record, min_labelled=s.shadow_min_labelled, min_s=s.shadow_min_s)
    if reasons:
        raise NotPromotable(
            f"{s.model_name} v{version} is not promoted, not shadowed enough: " + "; ".join(reasons)
        )


def _end_shadow_of_promoted(settings: Settings, version: str, *, by: str) -> None:
    """A challenger now in production has nothing left to be compared with: stop its shadow."""
    client = _client(settings)
    challenger = current(client, settings.model_name, settings.challenger_alias)
    if challenger is not None and str(challenger.version) == version:
        stop_shadow(client, settings.model_name, alias=settings.challenger_alias, by=by,
                    reason=f"promoted to {settings.alias}")  # fmt: skip
        typer.echo(f"{settings.model_name} '{settings.challenger_alias}' removed (now serving)")


@app.command("shadow")
def shadow_command(
    reason: Annotated[str, typer.Option(help="why; recorded on the version")],
    version: Annotated[str | None, typer.Argument(help="model version to run in shadow")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="end the shadow: remove the alias")] = False,
    by: Annotated[str | None, typer.Option(help="who; default user@host")] = None,
) -> None:
    """Run VERSION in shadow (the challenger alias): it answers live traffic into the shadow
    predictions topic only, never a client. With --stop, remove the challenger."""
    settings = Settings()
    client = _client(settings)
    alias = settings.challenger_alias
    try:
        if stop:
            if version is not None:
                raise RegistryError("--stop takes no version")
            stopped = stop_shadow(client, settings.model_name, alias=alias, by=by or who(),
                                  reason=reason)  # fmt: skip
            typer.echo(f"{settings.model_name} '{alias}' removed (was v{stopped})")
            return
        if version is None:
            raise RegistryError("which version? python -m export shadow VERSION --reason ...")
        moved = shadow(client, settings.model_name, version, alias=alias, by=by or who(),
                       reason=reason)  # fmt: skip
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    was = f"v{moved.previous}" if moved.previous else "none"
    typer.echo(f"{moved.model_name} '{moved.alias}' -> v{moved.version} (was {was})")


def live_gate(client: MlflowClient, settings: Settings, version: str) -> Gate | None:
    """Score VERSION against the serving one on the latest labelled live reviews, and record
    the result on it; None when no database is configured."""
    target = get_version(client, settings.model_name, version)
    with tempfile.TemporaryDirectory(prefix="live-replay-") as folder:
        try:
            bundle = download_bundle(
                changed_event(target, settings.alias), Path(folder) / "candidate"
            )
            gate = replay_gate(
                client, settings, OnnxPredictor(bundle), Path(folder), candidate_version=version
            )
        except Exception as exc:  # a gate that cannot run does not pass
            gate = Gate("live_replay", False, 0.0, 0.0, f"could not run: {type(exc).__name__}: "
                        f"{exc}")  # fmt: skip
    if gate is not None:
        record_gate(client, target, gate)
    return gate


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
    reproduce: Annotated[
        bool,
        typer.Option(
            "--reproduce",
            help="then train it again at its commit, on its data, with its parameters, and"
            " compare the figures (exit 1 when they differ, 2 when it cannot be reproduced)",
        ),
    ] = False,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="reproduce a run made from uncommitted code")
    ] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(help="largest difference allowed (default RS_EXPORT_REPRODUCE_TOLERANCE)"),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="track the reproduction there (default: a temporary store)"),
    ] = None,
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
    if reproduce:
        _reproduce(client, settings, info, allow_dirty, tolerance, tracking_uri)


def _reproduce(
    client: MlflowClient,
    settings: Settings,
    info: dict[str, object],
    allow_dirty: bool,
    tolerance: float | None,
    tracking_uri: str | None,
) -> None:
    from export.reproduce import ReproduceError, render_reproduction, reproduce

    run = info.get("run")
    if not isinstance(run, dict):
        typer.echo(f"error: v{info['version']} has no training run to reproduce", err=True)
        raise typer.Exit(2)
    typer.echo(f"reproducing run {run['id']} (this trains a model)...")
    try:
        result = reproduce(
            client,
            str(run["id"]),
            model_name=settings.model_name,
            tolerance=settings.reproduce_tolerance if tolerance is None else tolerance,
            allow_dirty=allow_dirty,
            tracking_uri=tracking_uri,
        )
    except ReproduceError as exc:
        typer.echo(f"error: cannot reproduce: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(render_reproduction(result))
    if not result.agrees:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
