"""The container image a training run executes in, recorded on every MLflow run it creates:
read from ``RS_TRAIN_IMAGE`` / ``RS_TRAIN_IMAGE_DIGEST`` (the image bakes the first in, whoever
starts it passes the second), "none" outside an image; a tag, never a parameter, and no part
of the fingerprint. On the real MLflow: a tuning study with one trial, and a data snapshot.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from deploy.local.launcher import LocalStack
from training.fingerprint import training_params
from training.settings import ROOT, FastSettings, Settings
from training.snapshot import build
from training.snapshot_store import SnapshotStore
from training.tracking import image_tags
from training.tune import tune

SAMPLE = ROOT / "data" / "sample"
IMAGE = "localhost/reviewstream/training:0.1.0"
DIGEST = "sha256:" + "ab" * 32


def in_image(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RS_TRAIN_IMAGE", IMAGE)
    monkeypatch.setenv("RS_TRAIN_IMAGE_DIGEST", DIGEST)
    return Settings()


def test_the_tags_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert image_tags(in_image(monkeypatch)) == {"image": IMAGE, "image.digest": DIGEST}


def test_outside_an_image_the_tags_say_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RS_TRAIN_IMAGE", raising=False)
    monkeypatch.delenv("RS_TRAIN_IMAGE_DIGEST", raising=False)
    assert image_tags(Settings()) == {"image": "none", "image.digest": "none"}


def test_the_image_is_no_parameter_and_leaves_the_fingerprint_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from training.families import family_for
    from training.pipeline import run_params

    inside = in_image(monkeypatch)
    outside = inside.model_copy(update={"image": None, "image_digest": None})
    assert training_params(inside) == training_params(outside)
    logged = run_params(inside, family_for(inside))
    assert not {"image", "image_digest"} & set(logged)


def test_a_tuning_study_and_its_trials_record_the_image(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    experiment = f"test-image-{uuid.uuid4().hex[:8]}"
    settings = in_image(monkeypatch).model_copy(
        update={
            "train_path": SAMPLE / "train.csv.gz",
            "experiment": experiment,
            "progress": False,
            "fast": FastSettings(epochs=1, batch_size=64),
        }
    )
    tuned = tune(settings, 1, params_file=tmp_path / "params.json")
    client = MlflowClient(tracking_uri=stack.mlflow_uri)
    found = client.get_experiment_by_name(f"{experiment}-tuning")
    assert found is not None
    runs = client.search_runs([found.experiment_id])
    assert {r.info.run_id for r in runs} >= {tuned.run_id}
    assert len(runs) == 2  # the study and its one trial
    for run in runs:
        assert run.data.tags["image"] == IMAGE
        assert run.data.tags["image.digest"] == DIGEST
        assert "image" not in run.data.params


def test_a_snapshot_run_records_the_image(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(tracking_uri=stack.mlflow_uri)
    store = SnapshotStore(
        client, f"test-image-data-{uuid.uuid4().hex[:8]}", tags=image_tags(in_image(monkeypatch))
    )
    snapshot = build([], [], test_texts=[], allowed_sources=[])
    stored = store.put(snapshot, recipe="r", live_labelled=0, manifest={})
    tags = client.get_run(stored.run_id).data.tags
    assert (tags["image"], tags["image.digest"]) == (IMAGE, DIGEST)
    assert tags["snapshot_digest"] == snapshot.digest  # the store's own tags still win
