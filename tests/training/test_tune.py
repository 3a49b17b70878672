"""A tuning run of a few trials on the real MLflow: one parent run, one nested run per trial
with its per-epoch curve, the best parameters written where `train` reads them; seeded, so a
second study on the same data picks the same parameters and scores them the same.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from typer.testing import CliRunner

from deploy.local.launcher import LocalStack
from training.__main__ import app
from training.settings import ROOT, Settings
from training.tune import SEARCHED

SAMPLE = ROOT / "data" / "sample"
TRIALS = 3


def tune_on_the_sample(tmp_path: Path, experiment: str, params: Path) -> str:
    env = {
        "RS_TRAIN_TRAIN_PATH": str(SAMPLE / "train.csv.gz"),
        # The search must not read the test file: one that does not exist proves it.
        "RS_TRAIN_TEST_PATH": str(tmp_path / "no-test-file.csv.gz"),
        "RS_TRAIN_EXPERIMENT": experiment,
    }
    args = ["tune", "--family", "fast", "--trials", str(TRIALS), "--params-file", str(params)]
    done = CliRunner().invoke(app, args, env=env)
    assert done.exit_code == 0, done.output
    return done.output


def trials_of(client: MlflowClient, experiment: str) -> tuple[Run, list[Run]]:
    found = client.get_experiment_by_name(f"{experiment}-tuning")
    assert found is not None
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])
    (parent,) = [r for r in runs if r.data.tags.get("tuning") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(children, key=lambda r: int(r.data.tags["trial"]))


def test_a_tuning_run_nests_its_trials_in_mlflow_and_writes_the_parameters(
    stack: LocalStack, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=stack.mlflow_uri)
    experiment = f"test-tune-{uuid.uuid4().hex[:8]}"
    params = tmp_path / "params.json"
    output = tune_on_the_sample(tmp_path, experiment, params)
    parent, children = trials_of(client, experiment)
    assert [int(c.data.tags["trial"]) for c in children] == list(range(TRIALS))
    for child in children:
        state = child.data.tags["trial_state"]
        assert (state, child.info.status) in {("complete", "FINISHED"), ("pruned", "KILLED")}
        curve = client.get_metric_history(child.info.run_id, "epoch_val_accuracy")
        assert [m.step for m in curve] == list(range(1, len(curve) + 1))
        if state == "complete":
            assert len(curve) == int(child.data.params["fast.epochs"])
    best = int(parent.data.tags["best_trial"])
    chosen = children[best]
    assert chosen.data.tags["trial_state"] == "complete"
    assert parent.data.metrics["best_val_accuracy"] == chosen.data.metrics["val_accuracy"]
    assert parent.info.status == "FINISHED"
    assert parent.inputs is not None
    assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {"train", "validation"}

    written = json.loads(params.read_text())
    assert set(written["fast"]) == set(SEARCHED)
    for key, value in written["fast"].items():
        assert str(value) == chosen.data.params[f"fast.{key}"]
    assert written["tuning"]["fast"]["run_id"] == parent.info.run_id
    assert f"best trial {best}" in output
    assert str(params) in output
    # A later train reads them as its defaults.
    tuned = Settings(params_file=params).fast
    assert {k: getattr(tuned, k) for k in SEARCHED} == written["fast"]

    # Seeded: the same study again samples the same points and scores them the same.
    again = f"{experiment}-again"
    tune_on_the_sample(tmp_path, again, tmp_path / "again.json")
    _, repeated = trials_of(client, again)
    assert [c.data.params for c in repeated] == [c.data.params for c in children]
    assert [c.data.metrics.get("val_accuracy") for c in repeated] == [
        c.data.metrics.get("val_accuracy") for c in children
    ]
    assert json.loads((tmp_path / "again.json").read_text())["fast"] == written["fast"]
