"""Train -> export -> gates -> register -> promote on the real MLflow server and registry;
a broken model is registered but never promoted; promote, rollback and lineage by command.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from deploy.local.launcher import LocalStack
from export.__main__ import app as export_app
from export.gates import Gate
from export.registry import NotPromotable, promote, record_gates
from export.release import Candidate, HeldOut, release
from export.settings import Settings as ExportSettings
from inference.registry import register_bundle, serving_version
from inference.synthetic import make_fast_bundle
from training.data import load
from training.families import FastFamily
from training.models import FastText
from training.pipeline import Outcome, run
from training.settings import ROOT, FastSettings, Settings

SAMPLE = ROOT / "data" / "sample"
GATES = {"accuracy_floor", "vs_production", "parity", "latency", "behaviour"}
IMAGE = "localhost/reviewstream/training:0.1.0"
IMAGE_DIGEST = "sha256:" + "cd" * 32


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sample_settings(model_name: str, **export: object) -> Settings:
    """The fast family on the repo's data sample; the floor suits 1,080 training reviews."""
    return Settings(
        train_path=SAMPLE / "train.csv.gz",
        test_path=SAMPLE / "test.csv.gz",
        experiment=unique("test-training"),
        progress=False,
        fast=FastSettings(buckets=1 << 16, epochs=4, batch_size=16),
        export=ExportSettings(
            model_name=model_name,
            accuracy_floor=0.8,
            behaviour_min_pass_rate=0.6,
            **export,  # type: ignore[arg-type]
        ),
    )


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)


@pytest.fixture(scope="module")
def shipped(stack: LocalStack) -> Outcome:
    """One full pipeline run: the first version of its model, promoted; as if in an image."""
    settings = sample_settings(unique("pipeline")).model_copy(
        update={"image": IMAGE, "image_digest": IMAGE_DIGEST}
    )
    return run(settings, by="pytest")


def test_the_pipeline_registers_a_gated_bundle_and_promotes_it(
    shipped: Outcome, client: MlflowClient, tmp_path: Path
) -> None:
    version = shipped.release.version
    assert shipped.release.passed
    assert shipped.release.promoted is not None
    assert shipped.release.promoted.previous is None
    event = serving_version(client, version.name, "production")
    assert event is not None
    assert event.version == str(version.version)
    tags = version.tags
    for name in GATES:
        assert tags[f"gate.{name}"] == "pass"
        assert tags[f"gate.{name}.detail"]
        float(tags[f"gate.{name}.value"])
    assert tags["gates"] == "passed"
    assert tags["promoted_by"] == "pytest"
    assert tags["family"] == "fast"
    assert tags["bundle_sha256"] == shipped.release.bundle.sha256
    # The version is an MLflow model; the bundle the workers download lies inside it.
    model = Path(mlflow.artifacts.download_artifacts(version.source, dst_path=str(tmp_path)))
    assert (model / "MLmodel").is_file()
    assert event.artifact_uri == f"{version.source}/{tags['bundle_path']}"
    files = {p.name for p in (model / tags["bundle_path"]).iterdir()}
    assert {"bundle.json", "model.onnx", "reference.json"} <= files


def test_the_run_records_data_code_params_and_metrics(
    shipped: Outcome, client: MlflowClient, tmp_path: Path
) -> None:
    run_ = client.get_run(shipped.run_id)
    tags, params, metrics = run_.data.tags, run_.data.params, run_.data.metrics
    assert len(tags["git_commit"]) == 40
    assert tags["git_dirty"] in {"true", "false"}
    assert len(tags["uv_lock_sha256"]) == 64
    assert (tags["image"], tags["image.digest"]) == (IMAGE, IMAGE_DIGEST)
    assert params["family"] == "fast"
    assert params["fast.buckets"] == str(1 << 16)
    assert params["positive_min_stars"] == "3.0"
    assert run_.inputs is not None
    inputs = {d.dataset.name: d for d in run_.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    assert inputs["train"].dataset.digest == tags["data.train.sha256"][:32]
    assert "train.csv.gz" in inputs["train"].dataset.source
    assert "sample" in tags["data.test.sources"]
    for key in ("accuracy", "macro_f1", "roc_auc", "tn", "fp", "fn", "tp"):
        assert f"val_{key}" in metrics
        assert f"test_{key}" in metrics
    assert metrics["test_accuracy"] >= 0.8
    assert metrics["training_time_s"] > 0
    history = client.get_metric_history(shipped.run_id, "epoch_val_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    artifacts = {a.path for a in client.list_artifacts(shipped.run_id, "evaluation")}
    assert "evaluation/gates.json" in artifacts
    assert "evaluation/confusion_test.json" in artifacts
    # What the version learned: its explainer on the test reviews.
    explained = {a.path for a in client.list_artifacts(shipped.run_id, "explanations")}
    assert explained == {
        "explanations/top_words.json",
        "explanations/top_words.png",
        "explanations/word_weights.png",
    }
    folder = Path(client.download_artifacts(shipped.run_id, "explanations", str(tmp_path)))
    top = json.loads((folder / "top_words.json").read_text())
    assert top["method"] == "ngram_sum"
    assert top["reviews"] == 300  # the whole sample test set: fewer than the 500 allowed
    assert top["positive"][0]["mean"] > 0 > top["negative"][0]["mean"]
    for chart in ("top_words.png", "word_weights.png"):
        assert (folder / chart).read_bytes()[:4] == b"\x89PNG"
    assert metrics["explain_ms_p50"] > 0


def test_a_broken_model_is_registered_but_not_promoted(
    shipped: Outcome, client: MlflowClient, tmp_path: Path
) -> None:
    name = shipped.release.version.name
    settings = sample_settings(name).export
    test, _ = load(SAMPLE / "test.csv.gz", name="test")
    family = FastFamily(FastSettings(buckets=1 << 16))
    torch.manual_seed(0)
    broken = FastText(buckets=1 << 16, dim=16)  # random weights, never trained
    with torch.no_grad():
        broken.linear.weight.mul_(200)  # confident, and right only by chance
    experiment = client.create_experiment(unique("broken"))
    run_id = client.create_run(experiment).info.run_id
    result = release(
        client,
        run_id=run_id,
        candidate=Candidate(broken, "fast", family.preprocessor()),
        test=HeldOut(test.texts, test.labels, test.digest()),
        reference_texts=test.texts[:4],
        settings=settings,
        workdir=tmp_path,
        promote_if_passed=True,
        by="pytest",
    )
    assert not result.passed
    assert result.promoted is None
    failed = {g.name for g in result.failures()}
    assert {"accuracy_floor", "behaviour"} <= failed
    floor = next(g for g in result.gates if g.name == "accuracy_floor")
    assert "below the floor 0.8000 by" in floor.detail
    tags = client.get_model_version(name, result.version.version).tags
    assert tags["gates"] == "failed"
    assert tags["gate.accuracy_floor"] == "fail"
    assert tags["gate.parity"] == "pass"
    assert set(tags["gates.failed"].split(",")) == failed
    event = serving_version(client, name, "production")
    assert event is not None
    assert event.version == str(shipped.release.version.version)  # still the good one
    with pytest.raises(NotPromotable, match="accuracy_floor: test accuracy"):
        promote(client, name, str(result.version.version), alias="production", by="x", reason="y")


def test_promote_and_rollback_commands_move_the_alias(client: MlflowClient, tmp_path: Path) -> None:
    name = unique("alias")
    experiment = client.create_experiment(name)
    versions = []
    for seed, passed in [(1, True), (2, True), (3, False)]:
        run_id = client.create_run(experiment).info.run_id
        bundle = make_fast_bundle(tmp_path / f"b{seed}", seed=seed)
        version = register_bundle(client, run_id=run_id, bundle=bundle, model_name=name)
        record_gates(client, version, [Gate("accuracy_floor", passed, 0.9, 0.95, "d")])
        versions.append(str(version.version))
    good1, good2, bad = versions
    cli = CliRunner()
    env = {"RS_EXPORT_MODEL_NAME": name}

    done = cli.invoke(export_app, ["promote", good1, "--reason", "first", "--by", "ann"], env=env)
    assert done.exit_code == 0, done.output
    assert f"-> v{good1} (was none)" in done.output
    done = cli.invoke(export_app, ["promote", good2, "--reason", "better"], env=env)
    assert done.exit_code == 0, done.output
    assert f"-> v{good2} (was v{good1})" in done.output
    refused = cli.invoke(export_app, ["promote", bad, "--reason", "try"], env=env)
    assert refused.exit_code == 1
    assert "gates failed: accuracy_floor" in refused.output
    assert _serving(client, name) == good2

    back = cli.invoke(export_app, ["rollback", "--reason", "complaints", "--by", "bob"], env=env)
    assert back.exit_code == 0, back.output
    assert f"-> v{good1} (rolled back from v{good2})" in back.output
    assert _serving(client, name) == good1
    rolled = client.get_model_version(name, good2).tags
    assert (rolled["rolled_back_by"], rolled["rolled_back_reason"]) == ("bob", "complaints")
    restored = client.get_model_version(name, good1).tags
    assert restored["serving_reason"] == "rolled_back"
    assert restored["promoted_by"] == "ann"
    again = cli.invoke(export_app, ["rollback", "--reason", "more"], env=env)
    assert again.exit_code == 1
    assert "no previous production version" in again.output


def test_lineage_prints_run_data_code_params_and_gates(shipped: Outcome) -> None:
    version = shipped.release.version
    env = {"RS_EXPORT_MODEL_NAME": version.name}
    done = CliRunner().invoke(export_app, ["lineage"], env=env)  # the alias's version
    assert done.exit_code == 0, done.output
    out = done.output
    assert f"model {version.name} v{version.version} (fast)" in out
    assert f"run {shipped.run_id}" in out
    assert "code: commit " in out
    assert "uv.lock sha256 " in out
    assert f"image: {IMAGE} (digest {IMAGE_DIGEST})" in out
    for name in ("train", "validation", "test"):
        assert f"  {name} [" in out
    assert str(SAMPLE / "train.csv.gz") in out
    assert "fast.buckets = 65536" in out
    assert "test_accuracy = " in out
    assert "gates: passed" in out
    for gate in GATES:
        assert f"  {gate}: pass - " in out
    assert "promoted_by = pytest" in out
    missing = CliRunner().invoke(export_app, ["lineage", "999"], env=env)
    assert missing.exit_code == 1
    assert "does not exist" in missing.output


def _serving(client: MlflowClient, name: str) -> str:
    event = serving_version(client, name, "production")
    assert event is not None
    return event.version
