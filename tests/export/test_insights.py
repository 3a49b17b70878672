"""What a version learned: words ranked from real explanations, and the charts of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import ExplainMethod, Explanation, WordWeight
from export.insight_plots import bar_chart, distribution_plot
from export.insights import Insights, insights, rank_words, sample_texts
from export.release import Candidate, build_bundle
from export.settings import Settings as ExportSettings
from inference import OnnxPredictor, explainer_for
from tests.training.test_fast import SAMPLE, train_small
from training.data import load

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def explanation(*pairs: tuple[str, float]) -> Explanation:
    words, start = [], 0
    for word, weight in pairs:
        words.append(WordWeight(word=word, start=start, end=start + len(word), weight=weight))
        start += len(word) + 1
    return Explanation(method=ExplainMethod.OCCLUSION, base=0.0, logit=0.0, words=words)


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Insights:
    """A fast model trained on the repository's sample, explained on its test reviews."""
    family, fitted, _ = train_small(seed=5)
    candidate = Candidate(fitted.model, "fast", family.preprocessor())
    workdir = tmp_path_factory.mktemp("insights")
    bundle, _ = build_bundle(candidate, ["Great."], ExportSettings(), workdir, run_id="test")
    test, _ = load(SAMPLE / "test.csv.gz", name="test")
    explainer = explainer_for(OnnxPredictor(bundle))
    return insights(explainer, test.texts, limit=300, min_reviews=3, top=15)


def test_words_are_ranked_by_their_mean_weight_per_review() -> None:
    explanations = [
        # "Good" twice in one review counts once, at its mean there (1.0).
        explanation(("Good", 0.5), ("food", 0.1), ("good", 1.5), ("!", 3.0)),
        explanation(("good", 2.0), ("bad", -1.0), ("food", -0.2)),
        explanation(("bad", -3.0), (",", -9.0), ("rare", 9.0)),
    ]
    found = rank_words(explanations, min_reviews=2, top=5, explain_ms=[1.0, 2.0, 3.0])
    assert [(s.word, s.mean, s.reviews) for s in found.positive] == [("good", 1.5, 2)]
    assert [s.word for s in found.negative] == ["bad", "food"]  # "rare" is in 1 review only
    assert found.negative[0].mean == pytest.approx(-2.0)
    assert found.negative[0].weights == (-1.0, -3.0)
    summary = found.as_dict()
    assert summary["method"] == "occlusion"
    assert summary["reviews"] == 3
    assert summary["explain_ms_p50"] == pytest.approx(2.0)
    assert "weights" not in summary["positive"][0]
    assert rank_words(explanations, min_reviews=1, top=1).positive[0].word == "rare"


def test_the_sample_is_bounded_seeded_and_in_order() -> None:
    texts = [f"review {i}" for i in range(100)]
    chosen = sample_texts(texts, 10, seed=3)
    assert len(chosen) == 10
    assert chosen == sample_texts(texts, 10, seed=3)
    assert chosen == sorted(chosen, key=texts.index)
    assert sample_texts(texts[:4], 10) == texts[:4]


def test_a_trained_fast_model_learned_positive_and_negative_words(learned: Insights) -> None:
    assert learned.reviews == 300
    assert learned.method == "ngram_sum"
    assert len(learned.positive) == 15
    assert len(learned.negative) == 15
    positive = {s.word for s in learned.positive}
    negative = {s.word for s in learned.negative}
    assert len(positive & {"great", "delicious", "amazing", "excellent", "best", "love"}) >= 2
    assert len(negative & {"not", "worst", "terrible", "bad", "horrible", "never", "rude"}) >= 2
    assert all(s.mean > 0 and s.reviews >= 3 for s in learned.positive)
    assert all(s.mean < 0 for s in learned.negative)
    assert [s.mean for s in learned.positive] == sorted(
        (s.mean for s in learned.positive), reverse=True
    )
    assert len(learned.explain_ms) == 300


def test_the_charts_are_png_files(learned: Insights, tmp_path: Path) -> None:
    for draw in (bar_chart, distribution_plot):
        path = draw(learned, tmp_path / "charts" / f"{draw.__name__}.png")
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size > 10_000
    empty = rank_words([], min_reviews=1)
    assert bar_chart(empty, tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC
    assert distribution_plot(empty, tmp_path / "empty2.png").read_bytes()[:8] == PNG_MAGIC
