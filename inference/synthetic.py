"""Small but real ONNX bundles for tests and benchmarks, built with onnx.helper in milliseconds.

The graph is the fast model's shape: hashed-ngram ids -> one weight per bucket -> masked mean
-> sigmoid. Different seeds give different versions; ``bias`` pushes every answer one way.
Needs the ``onnx`` package (the training extra), not torch; the workers never import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference import Bundle, HashedNgrams, OnnxPredictor, write_bundle
from inference.bundle import WEIGHTS_FILE
from inference.monitoring import PROFILE_FILE, build_profile
from inference.onnx_weights import save_weights_apart

REFERENCE_TEXTS = [
    "The food was wonderful and the staff were kind.",
    "Terrible service, cold food, never again.",
    "It was fine.",
]


def tiny_onnx(path: Path, *, buckets: int, seed: int, bias: float = 0.0) -> Path:
    weights = np.random.default_rng(seed).normal(0, 1, size=(buckets,)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["weights", "ids"], ["scores"]),
        helper.make_node("Mul", ["scores", "mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axis"], ["count"], keepdims=0),
        helper.make_node("Max", ["count", "one"], ["safe_count"]),
        helper.make_node("Div", ["total", "safe_count"], ["mean"]),
        helper.make_node("Add", ["mean", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_fast",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch"])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
            numpy_helper.from_array(np.array(bias, dtype=np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    save_weights_apart(model, path)
    return path


def profile_texts(count: int, *, seed: int = 0) -> list[tuple[str, int]]:
    """Short made-up reviews with labels, from a small vocabulary (a reference profile's data)."""
    rng = np.random.default_rng(seed)
    good = ["lovely", "tasty", "kind", "great", "clean", "quick"]
    bad = ["cold", "rude", "slow", "dirty", "bland", "late"]
    rows = []
    for i in range(count):
        label = i % 2
        words = rng.choice(good if label else bad, size=int(rng.integers(3, 12)))
        rows.append((f"the food was {' and '.join(words)}", label))
    return rows


def make_fast_bundle(
    path: Path, *, seed: int = 0, bias: float = 0.0, buckets: int = 4096, profile: bool = False
) -> Bundle:
    """A tiny random fast model; with ``profile``, a reference profile computed on
    :func:`profile_texts` (the vocabulary it knows is theirs)."""
    work = path.parent / f".{path.name}.work"
    model = tiny_onnx(work / "model.onnx", buckets=buckets, seed=seed, bias=bias)
    preprocessor = HashedNgrams(buckets=buckets, max_tokens=64)
    preprocessing = preprocessor.config()
    weights = [w for w in (model.parent / WEIGHTS_FILE,) if w.exists()]
    draft = write_bundle(
        path,
        model_file=model,
        family="fast",
        preprocessing=preprocessing,
        reference_texts=REFERENCE_TEXTS,
        reference_probabilities=[0.0] * len(REFERENCE_TEXTS),
        extra_files=weights,
    )
    # Record what ONNX Runtime answers, as export does with torch's outputs.
    predictor = OnnxPredictor(draft)
    expected = predictor.predict(REFERENCE_TEXTS).tolist()
    extra = list(weights)
    if profile:
        held_out = profile_texts(400, seed=seed)
        texts = [t for t, _ in held_out]
        extra.append(
            build_profile(
                preprocessor,
                training_texts=[t for t, _ in profile_texts(400, seed=seed + 1)],
                held_out_texts=texts,
                held_out_labels=[label for _, label in held_out],
                held_out_probabilities=predictor.predict(texts).tolist(),
            ).save(work / PROFILE_FILE)
        )
    return write_bundle(
        path,
        model_file=model,
        family="fast",
        preprocessing=preprocessing,
        reference_texts=REFERENCE_TEXTS,
        reference_probabilities=expected,
        extra_files=extra,
    )
