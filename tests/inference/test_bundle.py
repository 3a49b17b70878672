from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference import BundleError, HashedNgrams, OnnxPredictor, ReferenceMismatch, load_bundle
from inference.preprocessing import preprocessor_for, tokenize
from inference.synthetic import REFERENCE_TEXTS, make_fast_bundle


def test_tokens_keep_words_negations_and_emphasis() -> None:
    assert tokenize("NOT good!! Don't go?") == ["not", "good", "!", "!", "don't", "go", "?"]


def test_hashing_is_stable_and_in_range() -> None:
    prep = HashedNgrams(buckets=1000, max_tokens=10)
    first = prep.features("the food was not good")
    assert first.tolist() == prep.features("The food was NOT good").tolist()
    assert len(first) == 5 + 4  # unigrams and bigrams
    assert first.min() >= 1
    assert first.max() <= 999
    assert len(prep.features(" ".join(["word"] * 50))) == 10 + 9


def test_batch_is_padded_with_a_mask() -> None:
    inputs = HashedNgrams(buckets=100).encode(["a b c", "", "d"])
    assert inputs["ids"].shape == (3, 5)
    assert inputs["mask"].sum(axis=1).tolist() == [5.0, 0.0, 1.0]
    assert (inputs["ids"][inputs["mask"] == 0] == 0).all()


def test_predictor_reproduces_its_reference(tmp_path: Path) -> None:
    bundle = make_fast_bundle(tmp_path / "b")
    predictor = OnnxPredictor(bundle)
    assert predictor.check_reference() <= 1e-6
    probabilities = predictor.predict([*REFERENCE_TEXTS, "🙂"])
    assert probabilities.shape == (4,)
    assert ((probabilities > 0) & (probabilities < 1)).all()
    assert predictor.predict([]).shape == (0,)


def test_another_model_fails_the_reference(tmp_path: Path) -> None:
    good = make_fast_bundle(tmp_path / "good", seed=1)
    other = make_fast_bundle(tmp_path / "other", seed=2)
    (other.path / "reference.json").write_text((good.path / "reference.json").read_text())
    manifest = json.loads((other.path / "bundle.json").read_text())
    manifest["files"]["reference.json"] = json.loads((good.path / "bundle.json").read_text())[
        "files"
    ]["reference.json"]
    (other.path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(ReferenceMismatch, match="exceeds tolerance"):
        OnnxPredictor(load_bundle(other.path)).check_reference()


def test_bundle_digest_and_files_are_verified(tmp_path: Path) -> None:
    bundle = make_fast_bundle(tmp_path / "b")
    assert load_bundle(bundle.path, expected_sha256=bundle.sha256).sha256 == bundle.sha256
    with pytest.raises(BundleError, match="expected"):
        load_bundle(bundle.path, expected_sha256="0" * 64)
    with (bundle.path / "model.onnx").open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(BundleError, match=r"model\.onnx has sha256"):
        load_bundle(bundle.path)
    with pytest.raises(BundleError, match=r"no bundle\.json"):
        load_bundle(tmp_path / "nothing")


def test_predictions_differ_between_seeds(tmp_path: Path) -> None:
    a = OnnxPredictor(make_fast_bundle(tmp_path / "a", seed=1)).predict(REFERENCE_TEXTS)
    b = OnnxPredictor(make_fast_bundle(tmp_path / "b", seed=2)).predict(REFERENCE_TEXTS)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/../../outside"])
def test_a_manifest_naming_a_file_outside_the_bundle_is_refused(tmp_path: Path, name: str) -> None:
    bundle = make_fast_bundle(tmp_path / "b")
    manifest = json.loads((bundle.path / "bundle.json").read_text())
    manifest["files"][name] = "0" * 64
    (bundle.path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="is outside the bundle folder"):
        load_bundle(bundle.path)


def test_a_tokenizer_outside_the_bundle_or_unlisted_is_refused(tmp_path: Path) -> None:
    bundle = make_fast_bundle(tmp_path / "b")
    manifest = json.loads((bundle.path / "bundle.json").read_text())
    manifest["preprocessing"] = {"kind": "wordpiece", "tokenizer": "../../etc/passwd"}
    (bundle.path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not among the bundle's files"):
        load_bundle(bundle.path)
    with pytest.raises(BundleError, match="is outside the bundle folder"):
        preprocessor_for(manifest["preprocessing"] | {"max_length": 8}, bundle.path)


def test_a_symlink_leaving_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle = make_fast_bundle(tmp_path / "b")
    secret = tmp_path / "secret.txt"
    secret.write_text("not the model's")
    (bundle.path / "reference.json").unlink()
    (bundle.path / "reference.json").symlink_to(secret)
    with pytest.raises(BundleError, match="is outside the bundle folder"):
        load_bundle(bundle.path)
