"""``python -m training tune``: search the fast family's parameters with Optuna, in MLflow.

The search never sees the test file: each trial trains on train and is scored on the same
seeded, stratified validation split that ``train`` carves out of train. Every trial is a nested
MLflow run under one parent run (its parameters, its per-epoch curves, whether it was pruned);
a trial whose validation accuracy after an epoch is below the median of the earlier trials at
that epoch is pruned. The sampler (TPE) and every trial's training are seeded, so the same data
and seed give the same study. The best trial's parameters go to the parameters file that
``Settings`` reads, so a later ``train`` (or a retrain) picks them up like any other input.

Nested runs are logged here rather than by optuna-integration's ``MLflowCallback``: the callback
logs a trial only once it has ended, so its runs have no per-epoch curves, and it would be one
more pinned package for twenty lines.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import optuna
import torch

from export.evaluation import evaluate
from training.data import Examples, load, sample, split_validation
from training.families import FastFamily
from training.settings import ROOT, FastSettings, Settings
from training.tracking import code_version, flat_params, image_tags, log_examples
from training.trainer import EpochResult, fit, resolve_device

logger = logging.getLogger(__name__)

# The searched parameters; everything else keeps the value the settings give it.
BUCKET_CHOICES = (1 << 18, 1 << 19, 1 << 20)  # 2^20 x 32 floats: a 128 MB bundle at most
DIM_CHOICES = (16, 24, 32)
BATCH_CHOICES = (16, 32, 64)
EPOCHS = (2, 8)  # the trainer keeps the best epoch, so more epochs never cost accuracy
LEARNING_RATE = (0.02, 0.5)
TOKEN_DROPOUT = (0.0, 0.5)
SEARCHED = ("buckets", "dim", "batch_size", "epochs", "learning_rate", "token_dropout")


@dataclass(frozen=True)
class TuningData:
    train: Examples
    validation: Examples


@dataclass(frozen=True)
class Tuned:
    run_id: str
    experiment_id: str
    best_trial: int
    validation_accuracy: float
    params: dict[str, Any]
    params_file: Path
    trials: int
    pruned: int


def suggest(trial: optuna.Trial, base: FastSettings) -> FastSettings:
    """One point of the search space, on top of the settings' other values."""
    values = {
        "buckets": trial.suggest_categorical("buckets", BUCKET_CHOICES),
        "dim": trial.suggest_categorical("dim", DIM_CHOICES),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_CHOICES),
        "epochs": trial.suggest_int("epochs", *EPOCHS),
        "learning_rate": trial.suggest_float("learning_rate", *LEARNING_RATE, log=True),
        "token_dropout": trial.suggest_float("token_dropout", *TOKEN_DROPOUT),
    }
    return base.model_copy(update=values)


def load_tuning_data(settings: Settings) -> TuningData:
    """Train and its validation split, as ``train`` makes them; the test file is not read."""
    examples, report = load(
        settings.train_path,
        name="train",
        fmt=settings.data_format,
        rule=settings.label_rule,
        skip_malformed=settings.skip_malformed,
    )
    logger.info("%s", report.summary())
    examples = sample(examples, settings.max_train_rows, settings.seed)
    train, validation = split_validation(examples, settings.validation_fraction, settings.seed)
    return TuningData(train, validation)


def tune(settings: Settings, trials: int, *, params_file: Path | None = None) -> Tuned:
    """Run the study in one parent MLflow run and write the best parameters."""
    if settings.family != "fast":
        raise ValueError("only the fast family is tuned (the accurate one costs hours a trial)")
    if trials < 1:
        raise ValueError("tuning needs at least one trial")
    target = params_file or settings.params_file
    data = load_tuning_data(settings)
    device = resolve_device(settings.device)
    mlflow.set_tracking_uri(settings.export.mlflow_tracking_uri)
    experiment = mlflow.set_experiment(f"{settings.experiment}-tuning")
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        # Prune only from the third trial and after the first epoch: the median needs company.
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the log says it per trial below
    name = f"tune-fast-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(run_name=name) as parent:
        mlflow.set_tags(
            {
                **code_version(ROOT).tags(),
                **image_tags(settings),
                "family": "fast",
                "tuning": "study",
            }
        )
        mlflow.log_params(
            {
                "trials": trials,
                "seed": settings.seed,
                "sampler": "TPESampler",
                "pruner": "MedianPruner(n_startup_trials=2, n_warmup_steps=1)",
                "objective": "validation accuracy at the trainer's best epoch",
                "searched": ",".join(SEARCHED),
                "train_path": str(settings.train_path),
                "max_train_rows": str(settings.max_train_rows),
                "validation_fraction": settings.validation_fraction,
            }
        )
        log_examples(data.train, "training")
        log_examples(data.validation, "validation")
        objective = _objective(settings, data, device)
        study.optimize(objective, n_trials=trials, gc_after_trial=True)
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            raise RuntimeError("every trial was pruned or failed; nothing to write")
        best = study.best_trial
        params = {k: best.params[k] for k in SEARCHED}
        mlflow.log_metrics({"best_val_accuracy": float(best.value or 0.0), "pruned": pruned})
        mlflow.log_params({f"best.{k}": v for k, v in params.items()})
        mlflow.set_tag("best_trial", str(best.number))
        provenance = {
            "run_id": parent.info.run_id,
            "experiment_id": experiment.experiment_id,
            "best_trial": best.number,
            "validation_accuracy": best.value,
            "trials": trials,
            "pruned": pruned,
            "seed": settings.seed,
            "train_sha256": data.train.digest(),
            "validation_sha256": data.validation.digest(),
            "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_params(target, "fast", params, provenance)
        mlflow.log_dict({"fast": params, "tuning": {"fast": provenance}}, "tuning/params.json")
    return Tuned(
        run_id=parent.info.run_id,
        experiment_id=experiment.experiment_id,
        best_trial=best.number,
        validation_accuracy=float(best.value or 0.0),
        params=params,
        params_file=target,
        trials=trials,
        pruned=pruned,
    )


def _objective(
    settings: Settings, data: TuningData, device: torch.device
) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        fast = suggest(trial, settings.fast)
        mlflow.start_run(run_name=f"trial-{trial.number}", nested=True)
        status = "FAILED"
        try:
            mlflow.log_params(flat_params(FastFamily(fast).params()))
            mlflow.set_tags({"trial": str(trial.number), **image_tags(settings)})

            def on_epoch(result: EpochResult) -> None:
                mlflow.log_metrics(
                    {
                        "epoch_train_loss": result.train_loss,
                        "epoch_val_loss": result.val_loss,
                        "epoch_val_accuracy": result.val_accuracy,
                    },
                    step=result.epoch,
                )
                trial.report(result.val_accuracy, result.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {result.epoch}: below the median")

            fitted = fit(
                FastFamily(fast),
                data.train,
                data.validation,
                seed=settings.seed,
                device=device,
                progress=False,
                on_epoch=on_epoch,
            )
            accuracy = evaluate(data.validation.labels, fitted.validation_probabilities).accuracy
            mlflow.log_metrics({"val_accuracy": accuracy, "best_epoch": fitted.best_epoch})
            mlflow.set_tag("trial_state", "complete")
            status = "FINISHED"
            logger.info("trial %d: validation accuracy %.4f %s", trial.number, accuracy, fast)
            return accuracy
        except optuna.TrialPruned:
            mlflow.set_tag("trial_state", "pruned")
            status = "KILLED"
            logger.info("trial %d pruned: %s", trial.number, fast)
            raise
        finally:
            mlflow.end_run(status)

    return objective


def write_params(
    path: Path, family: str, params: dict[str, Any], provenance: dict[str, Any]
) -> None:
    """Replace one family's section (and its provenance) and keep the rest of the file."""
    content: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    content[family] = params
    content.setdefault("tuning", {})[family] = provenance
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
