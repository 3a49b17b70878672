"""``python -m training``: train a model, export it, gate it, register it, promote it.

    python -m training train --family fast          # the whole pipeline
    python -m training train --family accurate --max-length 128 --max-train-rows 4000 --epochs 1
    python -m training check-data                   # read the data files and report on them
    python -m training retrain --on-alerts          # train only if an input changed
    python -m training retrain --follow             # retrain when a drift/accuracy alert comes
    python -m training snapshot                     # take and store a data snapshot
    python -m training snapshot --fetch DIGEST --out data.csv.gz
    python -m training tune --family fast --trials 20   # Optuna; writes training/params.json

Settings come from ``RS_TRAIN_*`` / ``RS_EXPORT_*`` / ``MLFLOW_TRACKING_URI``; options override.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runtime.mlflow_credentials import load_password_file
from training.settings import Settings

if TYPE_CHECKING:
    from contracts import Alert
    from training.pipeline import Outcome

app = typer.Typer(add_completion=False, no_args_is_help=True)
logger = logging.getLogger("training")


@app.callback()
def main() -> None:
    """Train review sentiment models, tracked in MLflow, shipped through gates."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("onnx_ir", "onnxscript", "torch.onnx", "mlflow.store.model_registry"):
        logging.getLogger(chatty).setLevel(logging.ERROR)
    load_password_file()  # MLflow's password, from MLFLOW_TRACKING_PASSWORD_FILE when set


@app.command()
def train(
    family: Annotated[str | None, typer.Option(help="fast | accurate")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs for the chosen family")] = None,
    max_length: Annotated[
        int | None, typer.Option(help="accurate: WordPiece tokens per review")
    ] = None,
    max_train_rows: Annotated[int | None, typer.Option(help="seeded subset of train")] = None,
    max_test_rows: Annotated[int | None, typer.Option(help="seeded subset of test")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    promote: Annotated[
        bool, typer.Option("--promote/--no-promote", help="move the alias if every gate passes")
    ] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train -> export to ONNX -> gates -> register -> promote when every gate passes."""
    from training.pipeline import run

    settings = _with_overrides(
        Settings(),
        family=family,
        epochs=epochs,
        max_length=max_length,
        max_train_rows=max_train_rows,
        max_test_rows=max_test_rows,
        device=device,
        promote=promote,
        progress=progress,
    )
    outcome = run(settings)
    if not _report(settings, outcome):
        raise typer.Exit(1)


# retrain's exit status when it trained and a gate failed: not 1 (any crash), so a scheduler
# can tell "these inputs make a model the gates refuse" (retrying cannot help) from a failure.
GATES_FAILED = 3


@app.command()
def retrain(
    min_new_feedback: Annotated[
        int | None,
        typer.Option(help="new labelled live reviews that make a new snapshot (a setting)"),
    ] = None,
    fresh_snapshot: Annotated[
        bool, typer.Option("--fresh-snapshot", help="take a new snapshot whatever the count")
    ] = False,
    on_alerts: Annotated[
        bool,
        typer.Option(
            "--on-alerts", help="read models.alerts: a firing drift/accuracy alert takes a snapshot"
        ),
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="keep listening: each drift/accuracy alert runs `retrain --on-alerts`",
        ),
    ] = False,
    family: Annotated[str | None, typer.Option(help="fast | accurate")] = None,
    promote: Annotated[
        bool | None,
        typer.Option("--promote/--no-promote", help="move the alias if every gate passes"),
    ] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
) -> None:
    """Train only when the code, data snapshot, parameters or lock file changed (or an alert
    or enough new feedback asks for fresh data); otherwise say which run covers them."""
    if follow:
        passed_on = [
            *([f"--min-new-feedback={min_new_feedback}"] if min_new_feedback is not None else []),
            *([f"--family={family}"] if family is not None else []),
            *([] if promote is None else ["--promote" if promote else "--no-promote"]),
            *([] if progress is None else ["--progress" if progress else "--no-progress"]),
        ]
        _follow_alerts(passed_on)
        return

    import asyncio

    from training.alerts import handle_alerts
    from training.retrain import Decision
    from training.retrain import retrain as run_retrain
    from training.settings import RetrainSettings

    settings = _with_overrides(
        Settings(), family=family, epochs=None, max_length=None, promote=promote, progress=progress
    )
    policy = RetrainSettings()
    if min_new_feedback is not None:
        policy = policy.model_copy(update={"min_new_feedback": min_new_feedback})

    def decide(alerts: list[Alert]) -> Decision:
        reason = "asked for (--fresh-snapshot)" if fresh_snapshot else None
        trigger = "inputs"
        if alerts:
            names = ", ".join(sorted({a.name for a in alerts}))
            reason = trigger = f"alert {names}"
        return run_retrain(settings, policy, fresh_snapshot=reason, trigger=trigger)

    if on_alerts:
        decision = asyncio.run(handle_alerts(settings.export.kafka, policy, decide))
    else:
        decision = decide([])
    typer.echo(decision.data.reason)
    typer.echo(f"fingerprint {decision.fingerprint.value}")
    if decision.covered_by is not None:
        covering = decision.covered_by
        tags = covering.data.tags
        version = tags.get("registered_version", "none")
        typer.echo(
            f"up to date: run {covering.info.run_id} already trained on these inputs "
            f"(registered v{version}, gates {tags.get('gates', 'unknown')}); nothing to do"
        )
        return
    assert decision.trained is not None
    typer.echo(f"inputs changed ({', '.join(decision.changed)}): trained")
    if not _report(settings, decision.trained):
        raise typer.Exit(GATES_FAILED)


def _follow_alerts(retrain_options: list[str]) -> None:
    """Wait for alerts that call for retraining; run ``retrain --on-alerts`` for them; again.

    The retrain runs as a child process, so torch leaves memory when it ends, and it reads and
    commits the alerts itself: a crash leaves them for the next try, after a pause.
    """
    import asyncio
    import subprocess
    import sys
    import time

    from aiokafka.errors import KafkaError

    from runtime.kafka import wait_for_kafka
    from training.alerts import next_retraining_alerts
    from training.settings import RetrainSettings

    kafka = Settings().export.kafka
    policy = RetrainSettings()
    command = [sys.executable, "-m", "training", "retrain", "--on-alerts", *retrain_options]
    while True:
        try:
            asyncio.run(wait_for_kafka(kafka, topics=[kafka.alerts_topic], log=logger))
            alerts = asyncio.run(next_retraining_alerts(kafka, policy))
        except KafkaError as exc:
            logger.warning("reading %s failed (%s); waiting for Kafka", kafka.alerts_topic, exc)
            time.sleep(policy.follow_pause_s)
            continue
        names = ", ".join(sorted({a.name for a in alerts}))
        logger.info("alert %s calls for retraining: %s", names, " ".join(command[1:]))
        status = subprocess.run(command, check=False).returncode
        logger.info("retrain for alert %s ended with exit status %d", names, status)
        if status not in (0, GATES_FAILED):
            logger.warning(
                "retrain exited %d; trying again in %.0f s", status, policy.follow_pause_s
            )
            time.sleep(policy.follow_pause_s)


@app.command()
def snapshot(
    fetch: Annotated[
        str | None, typer.Option(help="the digest of a stored snapshot to fetch")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="where to write the fetched snapshot")] = None,
) -> None:
    """Take a data snapshot (train files + allowed live feedback, test texts left out), store it
    in MLflow and print its digest; or, with --fetch, write a stored one back byte for byte."""
    from mlflow import MlflowClient

    from training.retrain import store_new
    from training.settings import RetrainSettings
    from training.snapshot import file_name
    from training.snapshot_store import SnapshotNotFound, SnapshotStore
    from training.tracking import image_tags

    settings, policy = Settings(), RetrainSettings()
    uri = settings.export.mlflow_tracking_uri
    store = SnapshotStore(
        MlflowClient(tracking_uri=uri, registry_uri=uri),
        policy.data_experiment,
        tags=image_tags(settings),
    )
    if fetch is not None:
        try:
            written = store.fetch(fetch, out or Path(file_name(fetch)))
        except SnapshotNotFound as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"snapshot {fetch} written to {written}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        stored, path = store_new(settings, policy, store, Path(tmp))
        if out is not None:
            shutil.copyfile(path, out)
    typer.echo(f"snapshot {stored.digest} stored in run {stored.run_id}")


@app.command("check-data")
def check_data() -> None:
    """Read the configured train and test files and report rows, skips and label balance."""
    from training.data import DataError
    from training.pipeline import load_datasets

    settings = Settings()
    try:
        data = load_datasets(settings)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for report in data.reports.values():
        typer.echo(report.summary())
    for examples in (data.train, data.validation, data.test):
        typer.echo(
            f"{examples.name}: {len(examples)} reviews, {examples.positive_rate():.1%} positive, "
            f"sha256 {examples.digest()}"
        )


def _report(settings: Settings, outcome: Outcome) -> bool:
    """Print what a training run did; True when every gate passed."""
    shipped = outcome.release
    uri = settings.export.mlflow_tracking_uri.rstrip("/")
    test = shipped.test
    typer.echo(
        f"run {outcome.run_id}: {uri}/#/experiments/{outcome.experiment_id}/runs/{outcome.run_id}\n"
        f"trained {settings.family} in {outcome.training_seconds:.1f}s on {outcome.device} "
        f"(best epoch {outcome.best_epoch}); "
        f"validation accuracy {outcome.validation.accuracy:.4f}\n"
        f"test (ONNX, {test.count} reviews): accuracy {test.accuracy:.4f}, "
        f"macro-F1 {test.macro_f1:.4f}, ROC-AUC {test.roc_auc:.4f}, "
        f"confusion [[tn fp] [fn tp]] {[list(r) for r in test.confusion]}\n"
        f"registered {shipped.version.name} v{shipped.version.version}"
    )
    for g in shipped.gates:
        typer.echo(f"  gate {g.name}: {g.status} - {g.detail}")
    if shipped.promoted is not None:
        was = f"v{shipped.promoted.previous}" if shipped.promoted.previous else "none"
        typer.echo(
            f"promoted v{shipped.promoted.version} to '{shipped.promoted.alias}' (was {was})"
        )
    elif shipped.passed:
        typer.echo("every gate passed; not promoted (--no-promote)")
    else:
        failed = "; ".join(f"{g.name}: {g.detail}" for g in shipped.failures())
        typer.echo(f"NOT promoted, gates failed: {failed}", err=True)
    return shipped.passed


@app.command()
def tune(
    family: Annotated[str, typer.Option(help="only fast is tuned")] = "fast",
    trials: Annotated[int, typer.Option(min=1, help="Optuna trials (each trains a model)")] = 20,
    max_train_rows: Annotated[int | None, typer.Option(help="seeded subset of train")] = None,
    seed: Annotated[int | None, typer.Option(help="sampler and training seed")] = None,
    params_file: Annotated[
        Path | None, typer.Option(help="where the best parameters go (RS_TRAIN_PARAMS_FILE)")
    ] = None,
) -> None:
    """Search the family's parameters on the validation split; write the best for `train`."""
    from training.tune import tune as run_tune

    if family != "fast":
        raise typer.BadParameter("only the fast family is tuned", param_hint="--family")
    overrides = {"max_train_rows": max_train_rows, "seed": seed, "progress": False}
    settings = Settings.model_validate(
        {**Settings().model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    )
    tuned = run_tune(settings, trials, params_file=params_file)
    uri = settings.export.mlflow_tracking_uri.rstrip("/")
    typer.echo(
        f"study run {tuned.run_id}: {uri}/#/experiments/{tuned.experiment_id}/runs/{tuned.run_id}\n"
        f"{tuned.trials} trials ({tuned.pruned} pruned); best trial {tuned.best_trial}: "
        f"validation accuracy {tuned.validation_accuracy:.4f}\n"
        f"best parameters: {json.dumps(tuned.params, sort_keys=True)}\n"
        f"written to {tuned.params_file} (read by `train` below RS_TRAIN_FAST__* and options)"
    )


def _with_overrides(
    settings: Settings,
    *,
    family: str | None,
    epochs: int | None,
    max_length: int | None,
    **general: object,
) -> Settings:
    values = {k: v for k, v in general.items() if v is not None}
    if family is not None:
        if family not in {"fast", "accurate"}:
            raise typer.BadParameter("family must be fast or accurate", param_hint="--family")
        values["family"] = family
    chosen = str(values.get("family", settings.family))
    if values.get("device") not in {None, "auto", "cpu", "cuda"}:
        raise typer.BadParameter("device must be auto, cpu or cuda", param_hint="--device")
    updated = Settings.model_validate({**settings.model_dump(), **values})
    family_values: dict[str, object] = {}
    if epochs is not None:
        family_values["epochs"] = epochs
    if max_length is not None:
        family_values["max_length" if chosen == "accurate" else "max_tokens"] = max_length
    if family_values:
        current = getattr(updated, chosen)
        nested = type(current).model_validate({**current.model_dump(), **family_values})
        updated = updated.model_copy(update={chosen: nested})
    return updated


if __name__ == "__main__":
    app()
