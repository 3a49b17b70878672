"""Run a bundle with ONNX Runtime: one ``session.run`` per batch of texts."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from contracts import RequestFeatures
from inference.bundle import Bundle
from inference.monitoring import Profile, describe, load_profile
from inference.preprocessing import Preprocessor, preprocessor_for


class ReferenceMismatch(Exception):
    """The model does not reproduce the outputs recorded when it was exported."""


class OnnxPredictor:
    def __init__(self, bundle: Bundle, *, intra_op_threads: int = 1, inter_op_threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.bundle = bundle
        self.preprocessor: Preprocessor = preprocessor_for(bundle.preprocessing, bundle.path)
        self.session = ort.InferenceSession(
            str(bundle.model_file), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self.session.get_inputs()}
        self.profile: Profile | None = load_profile(bundle.path)

    def run(self, inputs: dict[str, NDArray[Any]]) -> NDArray[np.float32]:
        """Inference alone, on already preprocessed inputs."""
        feed = {name: value for name, value in inputs.items() if name in self._input_names}
        (probabilities,) = self.session.run(["probability"], feed)
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)

    def predict(self, texts: list[str]) -> NDArray[np.float32]:
        """Positive-class probability for each text."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        return self.run(self.preprocessor.encode(texts))

    def predict_described(
        self, texts: list[str]
    ) -> tuple[NDArray[np.float32], list[RequestFeatures]]:
        """Probabilities, and each text's features for the drift monitor."""
        if not texts:
            return np.zeros(0, dtype=np.float32), []
        inputs = self.preprocessor.encode(texts)
        known = self.profile.known if self.profile is not None else None
        return self.run(inputs), describe(self.preprocessor, inputs, known)

    def check_reference(self) -> float:
        """Compare with the recorded reference outputs; return the max abs difference."""
        reference = self.bundle.reference()
        expected = np.asarray(reference["probabilities"], dtype=np.float32)
        actual = self.predict(list(reference["texts"]))
        if actual.shape != expected.shape:
            raise ReferenceMismatch(f"reference shape {actual.shape} != {expected.shape}")
        worst = float(np.max(np.abs(actual - expected))) if len(expected) else 0.0
        if worst > float(reference["tolerance"]):
            raise ReferenceMismatch(
                f"max abs difference {worst:.3g} exceeds tolerance {reference['tolerance']}"
            )
        return worst
