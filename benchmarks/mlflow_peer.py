"""The peer we compare with: ``mlflow models serve`` of the same bundle, as an MLflow pyfunc.

The pyfunc wraps exactly the bundle the workers serve (same ONNX file, same preprocessing), so
the comparison measures the serving stacks, not the models.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc

ROOT = Path(__file__).resolve().parent.parent


class BundleModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """Text in, positive-class probability out, through the reviewstream bundle."""

    def load_context(self, context: Any) -> None:
        from inference import OnnxPredictor, load_bundle

        self.predictor = OnnxPredictor(load_bundle(Path(context.artifacts["bundle"])))

    def predict(self, context: Any, model_input: Any, params: Any = None) -> list[float]:
        texts = [str(t) for t in model_input["text"]]
        return [float(p) for p in self.predictor.predict(texts)]


def log_pyfunc(bundle_dir: Path, tracking_uri: str, experiment: str = "benchmarks") -> str:
    """Log the bundle as a pyfunc model; returns its model URI."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="mlflow-serve-peer"):
        info = mlflow.pyfunc.log_model(
            name="peer",
            python_model=BundleModel(),
            artifacts={"bundle": str(bundle_dir)},
            code_paths=[str(ROOT / "inference")],
            pip_requirements=["onnxruntime", "numpy", "tokenizers"],
        )
    return str(info.model_uri)


@dataclass(frozen=True)
class Served:
    url: str
    pid: int


@contextmanager
def mlflow_serve(model_uri: str, port: int, tracking_uri: str) -> Iterator[Served]:
    """Run the real ``mlflow models serve`` command until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        # mlflow execs `uvicorn` by name: put this environment's scripts first on PATH.
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("mlflow models serve did not answer /ping") from None
                time.sleep(0.5)
        yield Served(url, process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
