"""Integrated Gradients per word, lined up with occlusion's words; the rank correlation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.ig_agreement import IntegratedGradients, spearman
from export.release import Candidate, build_bundle
from export.settings import Settings as ExportSettings
from inference import OnnxPredictor, WordPiece, explainer_for
from training.families import minilm_dir
from training.models import MiniLMClassifier


def test_spearman_ranks_with_ties() -> None:
    a = np.array([0.1, 0.5, 0.3, 0.9])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([0.0, 0.0, 5.0])) == pytest.approx(1.0)
    assert np.isnan(spearman(np.ones(3), a[:3]))


def test_ig_explains_the_same_words_as_occlusion_and_adds_up(tmp_path: Path) -> None:
    tokenizer = minilm_dir() / "tokenizer.json"
    preprocessor = WordPiece(tokenizer, max_length=24)
    torch.manual_seed(0)
    model = MiniLMClassifier.untrained(vocab_size=30522).eval()
    candidate = Candidate(model, "accurate", preprocessor, (tokenizer,))
    bundle, _ = build_bundle(candidate, ["Great."], ExportSettings(), tmp_path, run_id="test")
    occlusion = explainer_for(OnnxPredictor(bundle))
    ig = IntegratedGradients(model, preprocessor, steps=64)
    text = "The soufflé wasn't great, honestly!"
    weights, gap = ig.word_weights(text)
    assert len(weights) == len(occlusion.explain(text).words)
    assert gap < 0.05  # completeness: the attributions add up to the logit's change
