"""Large weights in model.onnx.data: mapped by ONNX Runtime, verified like every bundle file,
and the same answers as the graph with its weights inline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from inference import BundleError, OnnxPredictor, load_bundle
from inference.bundle import MODEL_FILE, WEIGHTS_FILE
from inference.onnx_weights import ALIGNMENT
from inference.synthetic import REFERENCE_TEXTS, make_fast_bundle


def test_large_weights_go_apart_aligned_verified_and_answer_as_inline(tmp_path: Path) -> None:
    bundle = make_fast_bundle(tmp_path / "bundle", seed=2, buckets=2**15)  # 128 KiB of weights
    assert WEIGHTS_FILE in bundle.manifest["files"]
    graph = onnx.load(str(bundle.model_file), load_external_data=False)
    apart = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert apart
    for tensor in apart:
        where = {e.key: e.value for e in tensor.external_data}
        assert where["location"] == WEIGHTS_FILE
        assert int(where["offset"]) % ALIGNMENT == 0

    inline = tmp_path / "inline.onnx"
    onnx.save(onnx.load(str(bundle.model_file)), str(inline))  # the weights read back in
    ids = np.random.default_rng(0).integers(0, 2**15, size=(8, 40), dtype=np.int64)
    feed = {"ids": ids, "mask": np.ones((8, 40), dtype=np.float32)}
    ours = ort.InferenceSession(str(bundle.model_file), providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(str(inline), providers=["CPUExecutionProvider"])
    assert np.array_equal(ours.run(None, feed)[0], theirs.run(None, feed)[0])
    assert OnnxPredictor(bundle).check_reference() == 0.0

    with (bundle.path / WEIGHTS_FILE).open("r+b") as f:  # one weight changed
        first = f.read(1)[0]
        f.seek(0)
        f.write(bytes([first ^ 0xFF]))
    with pytest.raises(BundleError, match=WEIGHTS_FILE):
        load_bundle(bundle.path, expected_sha256=bundle.sha256)


def test_small_models_keep_their_weights_inline(tmp_path: Path) -> None:
    bundle = make_fast_bundle(tmp_path / "bundle", seed=2)  # 16 KiB of weights
    assert set(bundle.manifest["files"]) == {MODEL_FILE, "reference.json"}
    assert len(OnnxPredictor(bundle).predict(REFERENCE_TEXTS)) == len(REFERENCE_TEXTS)
