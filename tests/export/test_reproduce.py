"""`lineage --reproduce` on a fast-model version gives identical figures.

The version is trained from a clean, temporary worktree of HEAD (so the run records a commit
that exists and a clean tree, and this test commits nothing), on the repo's data sample, by
the same command that `make train` runs; then `lineage V --reproduce` trains it again from the
recorded commit, data and parameters and must find every figure identical. A run recorded as
made from uncommitted code is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from deploy.local.launcher import LocalStack
from export.__main__ import app as export_app
from export.reproduce import REPO

SAMPLE = REPO / "data" / "sample"


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Path]:
    """A clean checkout of HEAD, removed afterwards."""
    inside = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.stdout.strip() != "true":
        pytest.skip("reproduction needs the code in git, and this checkout is not a git work tree")
    path = tmp_path / "head"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), "HEAD"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                       check=False, capture_output=True)  # fmt: skip


def train_a_version(head: Path, stack: LocalStack, model: str, tmp_path: Path) -> None:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("RS_TRAIN_", "RS_EXPORT_"))}
    keep.pop("DATABASE_URL", None)
    env = {
        **keep,
        "PYTHONPATH": str(head),
        "MLFLOW_TRACKING_URI": stack.mlflow_uri,
        "RS_TRAIN_TRAIN_PATH": str(SAMPLE / "train.csv.gz"),
        "RS_TRAIN_TEST_PATH": str(SAMPLE / "test.csv.gz"),
        "RS_TRAIN_EXPERIMENT": f"test-reproduce-{uuid.uuid4().hex[:8]}",
        "RS_TRAIN_PARAMS_FILE": str(tmp_path / "no-params.json"),
        "RS_TRAIN_PROGRESS": "false",
        "RS_TRAIN_FAST__BUCKETS": str(1 << 16),
        "RS_TRAIN_FAST__EPOCHS": "2",
        "RS_TRAIN_FAST__BATCH_SIZE": "16",
        "RS_EXPORT_MODEL_NAME": model,
        "RS_EXPORT_ACCURACY_FLOOR": "0.5",
        "RS_EXPORT_BEHAVIOUR_MIN_PASS_RATE": "0.0",
        "RS_EXPORT_INSIGHT_REVIEWS_FAST": "50",
    }
    done = subprocess.run(
        [sys.executable, "-m", "training", "train", "--no-promote"],
        cwd=head,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_lineage_reproduce_gives_identical_figures_for_the_fast_model(
    stack: LocalStack, head: Path, tmp_path: Path
) -> None:
    model = f"reproduce-{uuid.uuid4().hex[:8]}"
    train_a_version(head, stack, model, tmp_path)
    client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    (version,) = client.search_model_versions(f"name = '{model}'")
    assert version.run_id is not None
    original = client.get_run(version.run_id)
    assert original.data.tags["git_dirty"] == "false"

    cli = CliRunner()
    env = {"RS_EXPORT_MODEL_NAME": model, "MLFLOW_TRACKING_URI": stack.mlflow_uri}
    done = cli.invoke(export_app, ["lineage", version.version, "--reproduce"], env=env)
    assert done.exit_code == 0, done.output
    assert "the figures agree (identical required)" in done.output
    assert "parameters file: " in done.output  # the lineage part, before the reproduction
    assert "MISMATCH" not in done.output
    assert "DIFFERENT INPUT" not in done.output
    for figure in ("test_accuracy", "test_macro_f1", "test_roc_auc", "epoch_val_loss[2]"):
        assert f"  {figure} " in done.output
    # Nothing was registered beside the version: the reproduction had a store of its own.
    assert len(client.search_model_versions(f"name = '{model}'")) == 1

    client.set_tag(version.run_id, "git_dirty", "true")
    refused = cli.invoke(export_app, ["lineage", version.version, "--reproduce"], env=env)
    assert refused.exit_code == 2
    assert "uncommitted changes" in refused.output
