"""One training run end to end: data -> fit -> evaluate -> export, gate, register, promote.

Everything is recorded in one MLflow run: parameters, per-epoch metrics, validation and test
figures, training time, the datasets as MLflow dataset inputs with their content digests, the
git commit and dirty flag, the lock file's hash, and the bundle that the version serves.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient

from contracts.reviewfiles import LoadReport
from export.evaluation import Metrics, evaluate
from export.profile import ProfileData
from export.registry import who
from export.release import Candidate, HeldOut, Release, release
from training.data import Examples, load, sample, split_validation
from training.families import Family, family_for
from training.settings import PLACE_FIELDS, ROOT, Settings
from training.tracking import (
    code_version,
    flat_params,
    image_tags,
    log_examples,
    log_load_report,
    params_file_tags,
)
from training.trainer import EpochResult, fit, resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Datasets:
    train: Examples
    validation: Examples
    test: Examples
    reports: dict[str, LoadReport]


@dataclass(frozen=True)
class Outcome:
    run_id: str
    experiment_id: str
    training_seconds: float
    best_epoch: int
    device: str
    validation: Metrics
    release: Release


def load_datasets(settings: Settings) -> Datasets:
    common: dict[str, Any] = {
        "fmt": settings.data_format,
        "rule": settings.label_rule,
        "skip_malformed": settings.skip_malformed,
    }
    train_all, train_report = load(settings.train_path, name="train", **common)
    test, test_report = load(settings.test_path, name="test", **common)
    for report in (train_report, test_report):
        logger.info("%s", report.summary())
    train_all = sample(train_all, settings.max_train_rows, settings.seed)
    test = sample(test, settings.max_test_rows, settings.seed)
    train, validation = split_validation(train_all, settings.validation_fraction, settings.seed)
    return Datasets(train, validation, test, {"train": train_report, "test": test_report})


def run_params(settings: Settings, family: Family) -> dict[str, Any]:
    general = settings.model_dump(exclude={"fast", "accurate", "export", *PLACE_FIELDS})
    gates = {f"export.{k}": v for k, v in settings.export.model_dump().items()}
    gates.pop("export.mlflow_tracking_uri", None)
    return {**general, **family.params(), **gates}


def run(
    settings: Settings, *, by: str | None = None, tags: Mapping[str, str] | None = None
) -> Outcome:
    """Train the configured family and ship it; the Outcome says what the gates decided.

    ``tags`` go on the run from its start (``retrain``'s fingerprint and snapshot); the run is
    FINISHED only once the release has ended, so a crashed run never covers a fingerprint.
    """
    family = family_for(settings)
    data = load_datasets(settings)
    device = resolve_device(settings.device)
    uri = settings.export.mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(settings.experiment)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_name = f"{family.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with mlflow.start_run(run_name=run_name) as active, tempfile.TemporaryDirectory() as tmp:
        run_id = active.info.run_id
        mlflow.set_tags(
            {
                **code_version(ROOT).tags(),
                "family": family.name,
                "device": str(device),
                **image_tags(settings),
                **(tags or {}),
            }
        )
        mlflow.set_tags(params_file_tags(settings.params_file))
        mlflow.log_params(flat_params(run_params(settings, family)))
        log_examples(data.train, "training")
        log_examples(data.validation, "validation")
        log_examples(data.test, "test")
        for name, report in data.reports.items():
            log_load_report(report, name)

        def on_epoch(result: EpochResult) -> None:
            mlflow.log_metrics(
                {
                    "epoch_train_loss": result.train_loss,
                    "epoch_val_loss": result.val_loss,
                    "epoch_val_accuracy": result.val_accuracy,
                    "epoch_seconds": result.seconds,
                },
                step=result.epoch,
            )

        fitted = fit(
            family,
            data.train,
            data.validation,
            seed=settings.seed,
            device=device,
            progress=settings.progress,
            on_epoch=on_epoch,
        )
        validation = evaluate(data.validation.labels, fitted.validation_probabilities)
        mlflow.log_metrics(
            {
                "training_time_s": fitted.seconds,
                "best_epoch": fitted.best_epoch,
                **validation.as_dict("val"),
            }
        )
        mlflow.log_dict(
            {"rows_true_0_1_columns_predicted_0_1": validation.confusion},
            "evaluation/confusion_validation.json",
        )
        logger.info(
            "trained in %.1fs on %s; validation accuracy %.4f (best epoch %d)",
            fitted.seconds,
            device,
            validation.accuracy,
            fitted.best_epoch,
        )
        candidate = Candidate(
            model=fitted.model.cpu(),
            family=family.name,
            preprocessor=family.preprocessor(),
            bundle_files=tuple(family.bundle_files()),
        )
        shipped = release(
            client,
            run_id=run_id,
            candidate=candidate,
            test=HeldOut(data.test.texts, data.test.labels, data.test.digest()),
            reference_texts=reference_texts(data.validation, settings),
            settings=settings.export,
            workdir=Path(tmp),
            promote_if_passed=settings.promote,
            by=by or who(),
            profile=ProfileData(
                training_texts=data.train.texts,
                held_out_texts=data.validation.texts,
                held_out_labels=[int(label) for label in data.validation.labels],
            ),
        )
        mlflow.set_tags(
            {
                "registered_version": str(shipped.version.version),
                "gates": "passed" if shipped.passed else "failed",
                "promoted": str(shipped.promoted is not None).lower(),
            }
        )
    return Outcome(
        run_id=run_id,
        experiment_id=experiment.experiment_id,
        training_seconds=fitted.seconds,
        best_epoch=fitted.best_epoch,
        device=str(device),
        validation=validation,
        release=shipped,
    )


def reference_texts(validation: Examples, settings: Settings) -> list[str]:
    """A seeded sample of validation reviews: the bundle's reference inputs."""
    rng = np.random.default_rng(settings.seed)
    size = min(settings.export.reference_size, len(validation))
    return [validation.texts[i] for i in sorted(rng.choice(len(validation), size, replace=False))]
