"""``python -m training``: train a model, export it, gate it, register it, promote it.

    python -m training train --family fast          # the whole pipeline
    python -m training train --family accurate --max-length 128 --max-train-rows 4000 --epochs 1
    python -m training check-data                   # read the data files and report on them
    python -m training tune --family fast --trials 20   # Optuna; writes training/params.json

Settings come from ``RS_TRAIN_*`` / ``RS_EXPORT_*`` / ``MLFLOW_TRACKING_URI``; options override.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from training.settings import Settings

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
        raise typer.Exit(1)


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
