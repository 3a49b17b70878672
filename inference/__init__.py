"""The model bundle and how to run it: preprocessing + ONNX Runtime, without torch.

Training writes bundles with it, export verifies them, workers and benchmarks serve them, so
serving can never drift from training.
"""

from inference.bundle import Bundle, BundleError, load_bundle, write_bundle
from inference.predictor import OnnxPredictor, ReferenceMismatch
from inference.preprocessing import HashedNgrams, Preprocessor, WordPiece, preprocessor_for

__all__ = [
    "Bundle",
    "BundleError",
    "HashedNgrams",
    "OnnxPredictor",
    "Preprocessor",
    "ReferenceMismatch",
    "WordPiece",
    "load_bundle",
    "preprocessor_for",
    "write_bundle",
]
