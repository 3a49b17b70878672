"""A registered version as an MLflow pyfunc: the bundle, run by the same code as the workers.

MLflow loads this class (shipped with the model as code, with ``contracts``) when anyone calls
``mlflow.pyfunc.load_model`` or ``mlflow models serve`` on a version. Workers never import it:
they download the bundle folder inside the model and run it without MLflow's pyfunc machinery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from inference.bundle import load_bundle
from inference.predictor import OnnxPredictor

ARTIFACT_KEY = "bundle"
TEXT_COLUMN = "text"
DEFAULT_THRESHOLD = 0.5  # the workers' default (RS_WORKER_THRESHOLD)


class BundleModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """``text`` in; ``probability`` (positive class) and ``label`` (0 or 1) out, per row."""

    def load_context(self, context: Any) -> None:
        # The bundle verifies itself (sha256 of every file), as it does in a worker.
        bundle = load_bundle(Path(context.artifacts[ARTIFACT_KEY]))
        self.predictor = OnnxPredictor(bundle)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        threshold = float((params or {}).get("threshold", DEFAULT_THRESHOLD))
        texts = [str(t) for t in model_input[TEXT_COLUMN]]
        # float32 -> float64 is exact: the same numbers the workers publish.
        probabilities = self.predictor.predict(texts).astype(np.float64)
        return pd.DataFrame(
            {
                "probability": probabilities,
                "label": (probabilities >= threshold).astype(np.int64),
            }
        )
