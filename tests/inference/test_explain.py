"""Explanations on a synthetic fast bundle: exact shares of the logit, words where they stand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from contracts import ExplainMethod
from inference import OnnxPredictor, explainer_for
from inference.explain import logits
from inference.preprocessing import token_spans, tokenize
from inference.synthetic import make_fast_bundle
from training.data import load
from training.settings import ROOT


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> OnnxPredictor:
    return OnnxPredictor(make_fast_bundle(tmp_path_factory.mktemp("explain") / "b", bias=0.3))


@pytest.mark.parametrize(
    "text",
    [
        "NOT good!! Don't go?",
        "İstanbul's café was great; the ŞİŞ kebab too.",
        "ﬁne ﬂat ẞtraße",  # ligatures and capitals whose lowercase is longer or different
        "",
        "   ...   ",
    ],
)
def test_token_spans_are_where_the_tokens_are(text: str) -> None:
    spans = token_spans(text)
    tokens = tokenize(text)
    assert len(spans) == len(tokens)
    for (start, end), token in zip(spans, tokens, strict=True):
        # The span holds the characters whose lowercase the token was cut from.
        assert 0 <= start < end <= len(text)
        assert token in "".join(c.lower() for c in text[start:end])
    assert spans == sorted(spans)


def test_token_spans_agree_with_the_tokenizer_on_real_reviews() -> None:
    reviews, _ = load(ROOT / "data" / "sample" / "test.csv.gz", name="test")
    for text in reviews.texts[:200]:
        assert len(token_spans(text)) == len(tokenize(text))


def test_fast_explanations_add_up_to_the_logit(predictor: OnnxPredictor) -> None:
    explainer = explainer_for(predictor)
    texts = ["The food was wonderful and the staff were kind.", "Cold.", "a b a b a b"]
    expected = logits(predictor.predict(texts))
    for text, logit in zip(texts, expected, strict=True):
        explanation = explainer.explain(text)
        assert explanation.method is ExplainMethod.NGRAM_SUM
        assert explanation.base == pytest.approx(0.3, abs=1e-5)  # the graph's bias
        assert explanation.logit == pytest.approx(logit, abs=1e-4)
        total = explanation.base + sum(w.weight for w in explanation.words)
        assert total == pytest.approx(explanation.logit, abs=1e-4)
        assert [w.word.lower() for w in explanation.words] == tokenize(text)
        assert all(text[w.start : w.end] == w.word for w in explanation.words)


def test_a_repeated_word_gets_the_same_weight_and_no_words_gives_the_bias(
    predictor: OnnxPredictor,
) -> None:
    explainer = explainer_for(predictor)
    weights = [w.weight for w in explainer.explain("good good good").words]
    # The two outer words share one bigram, the middle one two: the same n-grams in each row.
    assert weights[0] == pytest.approx(weights[2], abs=1e-6)
    assert np.sign(weights[0]) == np.sign(weights[1]) or math.isclose(weights[1], 0, abs_tol=1e-6)
    empty = explainer.explain("?!")
    assert empty.words[0].word == "?"
    nothing = explainer.explain("   ")
    assert nothing.words == []
    assert nothing.logit == pytest.approx(0.3, abs=1e-5)


def test_only_the_first_max_tokens_words_are_explained(tmp_path: Path) -> None:
    bundle = make_fast_bundle(tmp_path / "b")  # max_tokens 64
    text = " ".join(f"w{i}" for i in range(100))
    words = explainer_for(OnnxPredictor(bundle)).explain(text).words
    assert [w.word for w in words] == [f"w{i}" for i in range(64)]
