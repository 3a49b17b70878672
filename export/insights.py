"""What a version learned: the words that push its answers most, over held-out reviews.

Every review of a bounded, seeded sample is explained by the bundle's own explainer (the one
the workers use); a word's weight in a review is the mean of its weights there (a word may
occur twice), and its score is the mean of those over the reviews it occurs in. Words are
lowercased; words with no letter or digit (",", "!") are left out; a word must occur in at
least ``min_reviews`` reviews to be ranked, so one odd review cannot put a word on top.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from contracts import Explanation
from inference.explain import Explainer


@dataclass(frozen=True)
class WordScore:
    word: str
    mean: float  # mean over the reviews it occurs in, in logits (> 0 = towards positive)
    reviews: int  # reviews it occurs in
    weights: tuple[float, ...]  # its weight in each of those reviews


@dataclass(frozen=True)
class Insights:
    method: str
    reviews: int  # reviews explained
    min_reviews: int
    positive: list[WordScore]  # strongest first
    negative: list[WordScore]  # strongest (most negative) first
    explain_ms: list[float]  # time to explain each review

    def as_dict(self) -> dict[str, Any]:
        def rows(scores: list[WordScore]) -> list[dict[str, Any]]:
            return [{k: v for k, v in asdict(s).items() if k != "weights"} for s in scores]

        ms = np.asarray(self.explain_ms or [float("nan")])
        return {
            "method": self.method,
            "reviews": self.reviews,
            "min_reviews": self.min_reviews,
            "explain_ms_p50": float(np.percentile(ms, 50)),
            "explain_ms_p95": float(np.percentile(ms, 95)),
            "positive": rows(self.positive),
            "negative": rows(self.negative),
        }


def sample_texts(texts: Sequence[str], limit: int, seed: int = 0) -> list[str]:
    """At most ``limit`` texts, a seeded sample kept in file order."""
    if len(texts) <= limit:
        return list(texts)
    chosen = np.random.default_rng(seed).choice(len(texts), limit, replace=False)
    return [texts[i] for i in sorted(chosen)]


def explain_all(
    explainer: Explainer, texts: Iterable[str]
) -> tuple[list[Explanation], list[float]]:
    """Each text's explanation, and the milliseconds each took."""
    explanations, ms = [], []
    for text in texts:
        started = time.perf_counter()
        explanations.append(explainer.explain(text))
        ms.append((time.perf_counter() - started) * 1000)
    return explanations, ms


def per_review_weights(explanations: Iterable[Explanation]) -> dict[str, list[float]]:
    """word -> its mean weight in each review it occurs in."""
    out: dict[str, list[float]] = defaultdict(list)
    for explanation in explanations:
        in_review: dict[str, list[float]] = defaultdict(list)
        for w in explanation.words:
            word = w.word.lower()
            if any(c.isalnum() for c in word):
                in_review[word].append(w.weight)
        for word, weights in in_review.items():
            out[word].append(sum(weights) / len(weights))
    return dict(out)


def rank_words(
    explanations: Sequence[Explanation],
    *,
    min_reviews: int = 5,
    top: int = 15,
    explain_ms: Sequence[float] = (),
) -> Insights:
    """The ``top`` words with the highest and with the lowest mean weight."""
    scores = [
        WordScore(word, float(np.mean(weights)), len(weights), tuple(weights))
        for word, weights in per_review_weights(explanations).items()
        if len(weights) >= min_reviews
    ]
    scores.sort(key=lambda s: (-s.mean, s.word))
    positive = [s for s in scores if s.mean > 0][:top]
    negative = [s for s in reversed(scores) if s.mean < 0][:top]
    method = explanations[0].method.value if explanations else ""
    return Insights(method, len(explanations), min_reviews, positive, negative, list(explain_ms))


def insights(
    explainer: Explainer,
    texts: Sequence[str],
    *,
    limit: int,
    min_reviews: int = 5,
    top: int = 15,
    seed: int = 0,
) -> Insights:
    """Explain a bounded sample of ``texts`` and rank its words."""
    explanations, ms = explain_all(explainer, sample_texts(texts, limit, seed))
    return rank_words(explanations, min_reviews=min_reviews, top=top, explain_ms=ms)
