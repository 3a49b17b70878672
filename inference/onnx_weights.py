"""Writing an ONNX graph with its large weights in a file of their own (``model.onnx.data``).

ONNX Runtime maps such a file into memory instead of parsing the weights out of the graph and
copying them: a session costs its weights once, and only the pages it reads (a fast model's
embedding rows as reviews look them up), where an inline graph holds a parsed copy beside the
session's own while it loads (+72 MiB at the peak for the 32 MiB fast model). Each tensor
starts on a 64 KiB boundary, the granularity ONNX Runtime maps at on every platform.

For the code that writes bundles (export, ``inference.synthetic``); a worker never imports this
module (it imports onnx).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx.external_data_helper import set_external_data

from inference.bundle import WEIGHTS_FILE

ALIGNMENT = 1 << 16
MIN_BYTES = 1 << 16  # smaller tensors stay in the graph


def save_weights_apart(model: onnx.ModelProto, path: Path) -> Path | None:
    """Write ``model`` to ``path``, its initializers of ``MIN_BYTES`` or more (those held as
    raw bytes) to ``WEIGHTS_FILE`` beside it; return that file, or None when none is that
    large (the graph is then written whole)."""
    weights = path.parent / WEIGHTS_FILE
    large = [
        t
        for t in model.graph.initializer
        if t.HasField("raw_data") and len(t.raw_data) >= MIN_BYTES
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    weights.unlink(missing_ok=True)
    if large:
        with weights.open("wb") as out:
            for tensor in large:
                offset = -(-out.tell() // ALIGNMENT) * ALIGNMENT
                out.write(b"\0" * (offset - out.tell()))
                out.write(tensor.raw_data)
                set_external_data(tensor, WEIGHTS_FILE, offset, len(tensor.raw_data))
                tensor.data_location = onnx.TensorProto.EXTERNAL
                tensor.ClearField("raw_data")
    onnx.save(model, str(path))
    return weights if large else None
