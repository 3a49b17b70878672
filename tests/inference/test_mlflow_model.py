"""A registered version is an MLflow model: MLflow's own tools load and serve it, on the real
MLflow server of the test stack, and answer what the workers answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from benchmarks.mlflow_peer import mlflow_serve, registered_uri
from deploy.local.launcher import LocalStack, free_port
from inference import Bundle, OnnxPredictor
from inference.registry import register_bundle
from inference.synthetic import make_fast_bundle

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "The food was wonderful and the staff were kind.",
    "Terrible service, cold food, never again.",
    "It was fine.",
    "",
    "Great!",
]


@pytest.fixture
def client(stack: LocalStack) -> MlflowClient:
    # mlflow.pyfunc.load_model resolves models:/ URIs against the global tracking URI.
    mlflow.set_tracking_uri(stack.mlflow_uri)
    return MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)


def served_version(client: MlflowClient, tmp_path: Path) -> tuple[str, Bundle]:
    """A synthetic bundle registered as a new model whose production alias names it."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    bundle = make_fast_bundle(tmp_path / "bundle", seed=5)
    version = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    client.set_registered_model_alias(name, "production", version.version)
    return registered_uri(name, "production"), bundle


def test_mlflow_loads_a_version_and_answers_as_the_workers(
    client: MlflowClient, tmp_path: Path
) -> None:
    uri, bundle = served_version(client, tmp_path)
    model = mlflow.pyfunc.load_model(uri)
    answer = model.predict(pd.DataFrame({"text": TEXTS}))

    expected = OnnxPredictor(bundle).predict(TEXTS)
    assert list(answer.columns) == ["probability", "label"]
    np.testing.assert_array_equal(answer["probability"].to_numpy(), expected.astype(np.float64))
    assert answer["label"].tolist() == [int(p >= 0.5) for p in expected]
    low = model.predict(pd.DataFrame({"text": TEXTS}), params={"threshold": 0.0})
    assert low["label"].tolist() == [1] * len(TEXTS)

    # What the MLflow UI shows: a signature and an input example.
    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None
    assert info.signature.inputs.input_names() == ["text"]
    assert info.signature.outputs.input_names() == ["probability", "label"]
    assert info.saved_input_example_info is not None
    # Its environment is inference's, not training's.
    requirements = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text()
    assert "onnxruntime==" in requirements
    assert "torch" not in requirements


def test_a_version_loads_where_reviewstream_is_not_installed(
    client: MlflowClient, tmp_path: Path, stack: LocalStack
) -> None:
    """The pyfunc brings its own code: load it with the repository off sys.path."""
    uri, bundle = served_version(client, tmp_path)
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:] = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
        import mlflow.pyfunc, pandas
        model = mlflow.pyfunc.load_model({uri!r})
        import inference
        answer = model.predict(pandas.DataFrame({{"text": {TEXTS!r}}}))
        print(json.dumps({{"code": inference.__file__,
                          "probabilities": answer["probability"].tolist()}}))
        """
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=elsewhere,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        | {"MLFLOW_TRACKING_URI": stack.mlflow_uri},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["code"].startswith(str(ROOT))  # the model's copy of inference/
    expected = OnnxPredictor(bundle).predict(TEXTS).astype(np.float64)
    np.testing.assert_allclose(result["probabilities"], expected, rtol=0, atol=1e-6)


def test_mlflow_models_serve_answers_on_the_alias(
    client: MlflowClient, tmp_path: Path, stack: LocalStack
) -> None:
    uri, bundle = served_version(client, tmp_path)
    expected = OnnxPredictor(bundle).predict(TEXTS).astype(np.float64)
    with mlflow_serve(uri, free_port(), stack.mlflow_uri) as served:
        for payload in (
            {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
            {"inputs": {"text": TEXTS}},
        ):
            request = urllib.request.Request(
                f"{served.url}/invocations",
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                rows = json.loads(response.read())["predictions"]
            probabilities = [row["probability"] for row in rows]
            np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
            assert [row["label"] for row in rows] == [int(p >= 0.5) for p in expected]
