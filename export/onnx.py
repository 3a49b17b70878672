"""torch -> ONNX: one self-contained file, dynamic batch and sequence axes, ``probability`` out.

The graph's inputs are exactly what the model's ``inference`` preprocessor produces (their
names and dtypes are taken from a real ``encode`` call), so the bundle's preprocessor feeds it
as it is. :func:`torch_probabilities` gives the reference the parity check compares against.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from inference import Preprocessor
from inference.onnx_weights import save_weights_apart

logger = logging.getLogger(__name__)

OPSET = 18
# Two texts of different lengths: the exporter must not specialise batch or length to 0/1.
EXAMPLE_TEXTS = ["The food was great.", "Terrible service, cold food and a very long wait."]


class ExportError(Exception):
    """The model could not be turned into a valid ONNX graph."""


class Probability(nn.Module):
    """Wraps a logit model: the exported graph outputs sigmoid(logit), float32 [batch].

    Both preprocessors give two inputs (ids + mask, input_ids + attention_mask). The wrapper
    takes them as two named positional arguments rather than ``**kwargs``, whose treatment by
    ``torch.export`` differs between torch releases.
    """

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        if len(names) != 2:
            raise ExportError(f"expected two model inputs, the preprocessor gives {names}")
        self.model = model
        self.names = names

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        inputs = dict(zip(self.names, (first, second), strict=True))
        return torch.sigmoid(self.model(**inputs).float())


def to_tensors(inputs: dict[str, NDArray[Any]]) -> dict[str, Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in inputs.items()}


def torch_probabilities(
    model: nn.Module, preprocessor: Preprocessor, texts: list[str]
) -> NDArray[np.float32]:
    """What the torch model answers, on CPU, for texts encoded by the serving preprocessor."""
    model.eval()
    inputs = to_tensors(preprocessor.encode(texts))
    with torch.inference_mode():
        out = Probability(model, list(inputs))(*inputs.values())
    return np.asarray(out.numpy(), dtype=np.float32).reshape(-1)


def export_onnx(model: nn.Module, preprocessor: Preprocessor, path: Path) -> Path:
    """Export ``model`` (moved to CPU, eval mode) to ``path`` and check the graph."""
    model = model.cpu().eval()
    example = to_tensors(preprocessor.encode(EXAMPLE_TEXTS))
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # The exporter is chatty (axis renaming, deprecations inside torch); the parity
            # check on the result is what tells whether the graph is right.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Probability(model, list(example)),
                tuple(example.values()),
                str(path),
                input_names=list(example),
                output_names=["probability"],
                dynamic_shapes=tuple({0: batch, 1: length} for _ in example),
                opset_version=OPSET,
                external_data=False,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}") from exc
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    inputs = [i.name for i in graph.graph.input]
    outputs = [o.name for o in graph.graph.output]
    if inputs != list(example) or outputs != ["probability"]:
        raise ExportError(f"graph takes {inputs} and gives {outputs}, expected {list(example)}")
    # The weights in a file of their own, which ONNX Runtime maps rather than copies: a worker
    # holds them once, also while it loads (inference.onnx_weights).
    weights = save_weights_apart(graph, path)
    size = path.stat().st_size + (weights.stat().st_size if weights else 0)
    logger.info("exported %s (%.1f MB)", path, size / 1e6)
    return path
