"""The model bundle and how to run it: preprocessing + ONNX Runtime, without torch.

Training writes bundles with it, export verifies them, workers and benchmarks serve them, so
serving can never drift from training.

The names below are imported on first use (PEP 562), not with the package: a service that
needs only a light submodule (the stats processor: ``inference.monitoring``, numpy) runs in an
image without ONNX Runtime or tokenizers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.bundle import Bundle, BundleError, load_bundle, write_bundle
    from inference.explain import Explainer, explainer_for
    from inference.predictor import OnnxPredictor, ReferenceMismatch
    from inference.preprocessing import HashedNgrams, Preprocessor, WordPiece, preprocessor_for

_WHERE = {
    "Bundle": "inference.bundle",
    "BundleError": "inference.bundle",
    "load_bundle": "inference.bundle",
    "write_bundle": "inference.bundle",
    "Explainer": "inference.explain",
    "explainer_for": "inference.explain",
    "OnnxPredictor": "inference.predictor",
    "ReferenceMismatch": "inference.predictor",
    "HashedNgrams": "inference.preprocessing",
    "Preprocessor": "inference.preprocessing",
    "WordPiece": "inference.preprocessing",
    "preprocessor_for": "inference.preprocessing",
}

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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'inference' has no attribute {name!r}")
