"""The fast family learns from a small sample, deterministically; ONNX exports agree with torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from contracts import ExplainMethod
from export.evaluation import evaluate
from export.onnx import to_tensors, torch_probabilities
from export.profile import ProfileData
from export.release import Candidate, build_bundle
from export.settings import Settings as ExportSettings
from inference import HashedNgrams, OnnxPredictor, WordPiece, explainer_for
from inference.explain import Occlusion, logits
from training.data import load, split_validation
from training.families import FastFamily, minilm_dir
from training.models import MiniLMClassifier
from training.settings import ROOT, FastSettings
from training.trainer import Fitted, fit, predict

SAMPLE = ROOT / "data" / "sample"
SMALL = FastSettings(buckets=1 << 16, epochs=4, batch_size=16, threads=1)


def train_small(seed: int) -> tuple[FastFamily, Fitted, float]:
    train_all, _ = load(SAMPLE / "train.csv.gz", name="train")
    test, _ = load(SAMPLE / "test.csv.gz", name="test")
    train, validation = split_validation(train_all, 0.1, seed)
    family = FastFamily(SMALL)
    fitted = fit(family, train, validation, seed=seed, device=torch.device("cpu"), progress=False)
    probabilities = predict(fitted.model, family.encode(test.texts), device=torch.device("cpu"))
    return family, fitted, evaluate(test.labels, probabilities).accuracy


@pytest.fixture(scope="module")
def trained() -> tuple[FastFamily, Fitted, float]:
    return train_small(seed=5)


def test_batches_are_padded_like_the_serving_preprocessor() -> None:
    texts = ["The food was not good!", "", "ok", "a much longer review " * 30]
    preprocessor = HashedNgrams(buckets=1 << 12, max_tokens=50)
    family = FastFamily(FastSettings(buckets=1 << 12, max_tokens=50))
    batch = family.encode(texts).batch([0, 1, 2, 3])
    served = preprocessor.encode(texts)
    assert set(batch) == set(served)
    for name, value in served.items():
        assert batch[name].numpy().dtype == value.dtype
        assert np.array_equal(batch[name].numpy(), value)


def test_the_fast_model_learns_and_beats_the_majority_class(
    trained: tuple[FastFamily, Fitted, float],
) -> None:
    _, fitted, accuracy = trained
    # The sample is 69% positive; 1,080 training reviews get the fast model well past that.
    assert accuracy >= 0.8
    assert len(fitted.history) == SMALL.epochs
    assert fitted.history[-1].train_loss < fitted.history[0].train_loss
    assert 1 <= fitted.best_epoch <= SMALL.epochs


def test_same_inputs_give_the_same_metrics(trained: tuple[FastFamily, Fitted, float]) -> None:
    _, fitted, accuracy = trained
    _, again, accuracy_again = train_small(seed=5)
    assert accuracy_again == accuracy
    assert [h.val_loss for h in again.history] == [h.val_loss for h in fitted.history]
    assert np.array_equal(again.validation_probabilities, fitted.validation_probabilities)


def test_onnx_export_of_the_fast_model_agrees_with_torch(
    trained: tuple[FastFamily, Fitted, float], tmp_path: Path
) -> None:
    family, fitted, _ = trained
    candidate = Candidate(fitted.model, "fast", family.preprocessor())
    texts = ["Great pizza and friendly staff.", "The food was not good.", "Meh."]
    bundle, diff = build_bundle(candidate, texts, ExportSettings(), tmp_path, run_id="test")
    assert diff <= 1e-5
    graph = onnx.load(str(bundle.model_file)).graph
    inputs = {i.name: i.type.tensor_type for i in graph.input}
    assert list(inputs) == ["ids", "mask"]
    assert inputs["ids"].elem_type == onnx.TensorProto.INT64
    assert inputs["mask"].elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param for d in inputs["ids"].shape.dim] == ["batch", "length"]
    output = graph.output[0]
    assert output.name == "probability"
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    predictor = OnnxPredictor(bundle)
    assert predictor.check_reference() <= 1e-5
    # Dynamic axes: other batch sizes and lengths than the export example.
    many = [f"review {i} " + "tasty " * i for i in range(40)]
    expected = torch_probabilities(fitted.model, family.preprocessor(), many)
    assert np.max(np.abs(predictor.predict(many) - expected)) <= 1e-5


def test_onnx_export_of_the_minilm_architecture_agrees_with_torch(tmp_path: Path) -> None:
    """The accurate family's graph (a small random encoder of the same kind, real tokenizer)."""
    tokenizer = minilm_dir() / "tokenizer.json"
    preprocessor = WordPiece(tokenizer, max_length=24)
    torch.manual_seed(0)
    model = MiniLMClassifier.untrained(vocab_size=30522)
    candidate = Candidate(model, "accurate", preprocessor, (tokenizer,))
    texts = ["Great pizza.", "The food was not good, and the wait was long. " * 5, ""]
    bundle, diff = build_bundle(candidate, texts, ExportSettings(), tmp_path, run_id="test")
    assert diff <= 1e-4
    assert [i.name for i in onnx.load(str(bundle.model_file)).graph.input] == [
        "input_ids",
        "attention_mask",
    ]
    assert "tokenizer.json" in bundle.manifest["files"]
    assert OnnxPredictor(bundle).check_reference() <= 1e-4


def test_a_trained_fast_model_explains_exactly_and_sensibly(
    trained: tuple[FastFamily, Fitted, float], tmp_path: Path
) -> None:
    family, fitted, _ = trained
    candidate = Candidate(fitted.model, "fast", family.preprocessor())
    bundle, _ = build_bundle(candidate, ["Great."], ExportSettings(), tmp_path, run_id="test")
    explainer = explainer_for(OnnxPredictor(bundle))
    texts = ["good good good", "terrible awful horrible", "The pasta was great but cold."]
    inputs = to_tensors(family.preprocessor().encode(texts))
    with torch.inference_mode():
        torch_logits = fitted.model(**inputs).numpy()
    for text, logit in zip(texts, torch_logits, strict=True):
        explanation = explainer.explain(text)
        total = explanation.base + sum(w.weight for w in explanation.words)
        assert total == pytest.approx(float(logit), abs=1e-4)  # exact: the shares of the logit
    assert all(w.weight > 0 for w in explainer.explain("good good good").words)
    assert all(w.weight < 0 for w in explainer.explain("terrible awful horrible").words)


def test_the_accurate_family_is_explained_by_occlusion(tmp_path: Path) -> None:
    tokenizer = minilm_dir() / "tokenizer.json"
    torch.manual_seed(0)
    candidate = Candidate(
        MiniLMClassifier.untrained(vocab_size=30522),
        "accurate",
        pieces := WordPiece(tokenizer, max_length=16),
        (tokenizer,),
    )
    bundle, _ = build_bundle(candidate, ["Great."], ExportSettings(), tmp_path, run_id="test")
    predictor = OnnxPredictor(bundle)
    explainer = explainer_for(predictor)
    text = "The soufflé wasn't great, honestly! " * 3  # longer than 16 pieces: truncated
    explanation = explainer.explain(text)
    assert explanation.method is ExplainMethod.OCCLUSION
    assert explanation.logit == pytest.approx(float(logits(predictor.predict([text]))[0]), abs=1e-4)
    words = [w.word for w in explanation.words]
    assert words[:7] == ["The", "soufflé", "wasn", "'", "t", "great", ","]
    assert len(words) < len(text.split()) * 3  # only the words within max_length
    assert all(text[w.start : w.end] == w.word for w in explanation.words)
    # One word: masking it leaves what masking every word leaves.
    (single,) = explainer.explain("Great").words
    alone = explainer.explain("Great")
    assert single.weight == pytest.approx(alone.logit - alone.base, abs=1e-5)
    # A long review costs at most max_occluded masked rows: runs of neighbours share a weight.
    bounded = Occlusion(predictor, pieces, max_occluded=3).explain(text)
    assert [w.word for w in bounded.words] == words
    weights = [round(w.weight, 6) for w in bounded.words]
    first_run = -(-len(words) // 3)  # np.array_split puts the longer runs first
    assert len(set(weights[:first_run])) == 1
    assert len(set(weights)) <= 3


def test_the_bundle_ships_a_reference_profile_measured_on_the_onnx_model(
    trained: tuple[FastFamily, Fitted, float], tmp_path: Path
) -> None:
    family, fitted, _ = trained
    train, _ = load(SAMPLE / "train.csv.gz", name="train")
    held_out, _ = load(SAMPLE / "test.csv.gz", name="test")
    data = ProfileData(train.texts[:800], held_out.texts, [int(y) for y in held_out.labels])
    candidate = Candidate(fitted.model, "fast", family.preprocessor())
    bundle, _ = build_bundle(candidate, ["Great."], ExportSettings(), tmp_path, run_id="t",
                             profile=data)  # fmt: skip
    assert "profile.json" in bundle.manifest["files"]
    predictor = OnnxPredictor(bundle)
    profile = predictor.profile
    assert profile is not None
    assert profile.size == len(held_out.texts)
    expected = evaluate(held_out.labels, predictor.predict(held_out.texts)).accuracy
    assert profile.accuracy == pytest.approx(expected)
    _, (seen, unseen) = predictor.predict_described([train.texts[0], "qwxz vbnm plkj"])
    assert seen.unknown_share == 0.0  # every n-gram of a training review is known
    assert unseen.unknown_share is not None
    assert unseen.unknown_share > 0.5
