"""Log a bundle as an MLflow model: the pyfunc of :mod:`inference.pyfunc`, with the bundle as
its artifact, a signature, an input example and only inference's requirements.

Imported by whoever registers a version (release, tests, benchmarks), never by the workers:
MLflow's pyfunc machinery and pandas are heavy imports they have no use for.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from inference.bundle import Bundle
from inference.pyfunc import ARTIFACT_KEY, DEFAULT_THRESHOLD, TEXT_COLUMN, BundleModel

MODEL_NAME = "model"
# What the pyfunc imports: the bundle code and the wire contracts its predictor uses.
PACKAGES = ("inference", "contracts")
# What inference needs at run time (no torch, no onnx), pinned to what registered the version.
REQUIREMENTS = (
    "onnxruntime",
    "numpy",
    "pandas",
    "tokenizers",
    "pydantic",
    "pydantic-settings",
)
# MLflow copies the uv project it finds in the working directory (the whole repository's lock,
# torch included) into the model; its environment is the requirements above, so they go.
UV_PROJECT_FILES = ("uv.lock", "pyproject.toml", ".python-version")

EXAMPLE = pd.DataFrame(
    {TEXT_COLUMN: ["The food was wonderful and the staff were kind.", "Cold food, never again."]}
)
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", TEXT_COLUMN)]),
    outputs=Schema([ColSpec("double", "probability"), ColSpec("long", "label")]),
    params=ParamSchema([ParamSpec("threshold", "double", DEFAULT_THRESHOLD)]),
)


@dataclass(frozen=True)
class LoggedBundle:
    model_id: str
    source: str  # the MLflow model's folder: what a registered version points at
    bundle_path: str  # the bundle folder inside it, relative to ``source``


def log_bundle_model(client: MlflowClient, *, run_id: str, bundle: Bundle) -> LoggedBundle:
    """Log ``bundle`` as a logged model of the run (through ``client``, so the caller's
    tracking server, not a global one)."""
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id, model_type="pyfunc"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bundle-model-") as tmp:
            local = Path(tmp) / MODEL_NAME
            save_bundle_model(bundle, local, Model(model_id=logged.model_id, run_id=run_id))
            client.log_model_artifacts(logged.model_id, str(local))
            bundle_path = _bundle_path(local)
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    return LoggedBundle(logged.model_id, logged.artifact_location, bundle_path)


def save_bundle_model(bundle: Bundle, path: Path, mlflow_model: Model | None = None) -> None:
    """Write the MLflow model folder of ``bundle`` at ``path``."""
    root = Path(__file__).resolve().parent.parent
    mlflow.pyfunc.save_model(
        path=str(path),
        python_model=BundleModel(),
        artifacts={ARTIFACT_KEY: str(bundle.path)},
        code_paths=[str(root / package) for package in PACKAGES],
        signature=SIGNATURE,
        input_example=EXAMPLE,
        pip_requirements=[f"{name}=={installed_version(name)}" for name in REQUIREMENTS],
        mlflow_model=mlflow_model,
    )
    for name in UV_PROJECT_FILES:
        (path / name).unlink(missing_ok=True)


def _bundle_path(model_dir: Path) -> str:
    """Where MLflow put the bundle artifact (``artifacts/<folder name>``), from the MLmodel."""
    flavor = Model.load(str(model_dir)).flavors[mlflow.pyfunc.FLAVOR_NAME]
    return str(flavor["artifacts"][ARTIFACT_KEY]["path"])
