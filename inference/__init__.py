"""The model bundle and how to run it: preprocessing + ONNX Runtime, without torch.

Training writes bundles with it, export verifies them, workers and benchmarks serve them, so
serving can never drift from training.
"""

from inference.bundle import Bundle, BundleError, load_bundle, write_bundle
from inference.explain import Explainer, explainer_for
from inference.predictor import OnnxPredictor, ReferenceMismatch
from inference.preprocessing import HashedNgrams, Preprocessor, WordPiece, preprocessor_for

__all__ = [
    "Bundle",
    "BundleError",
    "Explainer",
    "HashedNgrams",
    "OnnxPredictor",
    "Preprocessor",
    "ReferenceMismatch",
    "WordPiece",
    "explainer_for",
    "load_bundle",
    "preprocessor_for",
    "write_bundle",
]
