"""Which words decided an answer: a weight per word, in logits (> 0 pushes towards positive).

Both explainers run on the bundle's ONNX graph with ONNX Runtime, in a single ``run`` per
explanation (the accurate model: a few), so they work in the workers on any bundle, old or new:

- :class:`NgramSum` (the fast model, exact). Its logit is ``bias + w · mean(embedding rows)``,
  and the mean divides by ``max(sum(mask), 1)``. A one-column row holding n-gram ``j`` with mask
  ``1/n`` therefore gives ``bias + (w · E_j) / n``: n-gram ``j``'s exact share of the logit of a
  review with ``n`` n-grams; a row with mask 0 gives the bias. So ``base + sum(weights)`` is the
  logit. A bigram's share is split evenly between its two words.
- :class:`Occlusion` (the accurate model). A word's weight is the logit minus the logit with
  the word's pieces masked out of attention (and of the mean pooling); ``base`` is the logit with
  every word masked. Weights need not add up to the logit: words interact in an encoder. A
  review longer than ``MAX_OCCLUDED`` words is masked in that many runs of neighbouring words,
  each word getting an equal part of its run's weight, so one explanation costs a bounded
  number of encoder passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from contracts import ExplainMethod, Explanation, WordWeight
from inference.predictor import OnnxPredictor
from inference.preprocessing import HashedNgrams, WordPiece, token_spans

# Rows per ONNX Runtime call when occluding: bounds the memory of one call on long reviews.
OCCLUSION_ROWS = 64
# Most encoder passes one explanation may cost (about 0.1 s each for MiniLM on one CPU core at
# 256 pieces): beyond it, neighbouring words are masked together.
MAX_OCCLUDED = 48
MAX_WORD_CHARS = 256


class Explainer(Protocol):
    def explain(self, text: str) -> Explanation: ...


def explainer_for(predictor: OnnxPredictor) -> Explainer:
    """The explainer that fits a loaded bundle's preprocessing."""
    preprocessor = predictor.preprocessor
    if isinstance(preprocessor, HashedNgrams):
        return NgramSum(predictor, preprocessor)
    if isinstance(preprocessor, WordPiece):
        return Occlusion(predictor, preprocessor)
    raise ValueError(f"no explainer for {type(preprocessor).__name__}")


def logits(probabilities: NDArray[np.float32]) -> NDArray[np.float64]:
    # float32 sigmoid outputs are exactly 0 or 1 beyond about |17|; keep those finite.
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1 - 1e-12)
    return np.asarray(np.log(p) - np.log1p(-p), dtype=np.float64)


def words(
    text: str, spans: Sequence[tuple[int, int]], weights: Sequence[float]
) -> list[WordWeight]:
    return [
        WordWeight(word=text[start:end][:MAX_WORD_CHARS], start=start, end=end, weight=weight)
        for (start, end), weight in zip(spans, weights, strict=True)
    ]


class NgramSum:
    def __init__(self, predictor: OnnxPredictor, preprocessor: HashedNgrams) -> None:
        self.predictor = predictor
        self.preprocessor = preprocessor

    def explain(self, text: str) -> Explanation:
        spans = token_spans(text)[: self.preprocessor.max_tokens]
        ngrams = self.preprocessor.features(text)  # unigrams, then bigrams
        count = len(ngrams)
        ids = np.zeros((count + 1, 1), dtype=np.int64)
        mask = np.zeros((count + 1, 1), dtype=np.float32)
        ids[:count, 0] = ngrams
        mask[:count, 0] = 1.0 / max(count, 1)
        out = logits(self.predictor.run({"ids": ids, "mask": mask}))
        base, shares = float(out[count]), out[:count] - out[count]
        unigrams, bigrams = shares[: len(spans)], shares[len(spans) :]
        weights = unigrams.copy()
        weights[:-1] += bigrams / 2
        weights[1:] += bigrams / 2
        return Explanation(
            method=ExplainMethod.NGRAM_SUM,
            base=base,
            logit=base + float(shares.sum()),
            words=words(text, spans, weights.tolist()),
        )


class Occlusion:
    def __init__(
        self, predictor: OnnxPredictor, preprocessor: WordPiece, max_occluded: int = MAX_OCCLUDED
    ) -> None:
        self.predictor = predictor
        self.preprocessor = preprocessor
        self.max_occluded = max_occluded

    def explain(self, text: str) -> Explanation:
        encoding = self.preprocessor.encode_one(text)
        input_ids = np.asarray(encoding.ids, dtype=np.int64)
        attention = np.asarray(encoding.attention_mask, dtype=np.int64)
        pieces: dict[int, list[int]] = {}
        for position, word in enumerate(encoding.word_ids):
            if word is not None:
                pieces.setdefault(word, []).append(position)
        groups = list(pieces.values())
        spans = [(encoding.offsets[g[0]][0], encoding.offsets[g[-1]][1]) for g in groups]
        # Each row costs a full encoder pass: a long review is masked in at most
        # max_occluded runs of neighbouring words, each word weighing its run's share.
        runs = np.array_split(np.arange(len(groups)), min(len(groups), self.max_occluded))
        # Row 0: the review; row 1: every word masked; then one row per run masked.
        masks = np.repeat(attention[None, :], len(runs) + 2, axis=0)
        for row, run in enumerate(runs, start=2):
            masks[row, [p for w in run for p in groups[w]]] = 0
        masks[1, [p for g in groups for p in g]] = 0
        out = self._logits(input_ids, masks)
        full, base = float(out[0]), float(out[1])
        weights = np.zeros(len(groups))
        for run, lost in zip(runs, full - out[2:], strict=True):
            weights[run] = lost / len(run)
        return Explanation(
            method=ExplainMethod.OCCLUSION,
            base=base,
            logit=full,
            words=words(text, spans, weights.tolist()),
        )

    def _logits(self, input_ids: NDArray[np.int64], masks: NDArray[np.int64]) -> NDArray[Any]:
        parts = []
        for start in range(0, len(masks), OCCLUSION_ROWS):
            chunk = masks[start : start + OCCLUSION_ROWS]
            ids = np.repeat(input_ids[None, :], len(chunk), axis=0)
            parts.append(self.predictor.run({"input_ids": ids, "attention_mask": chunk}))
        return logits(np.concatenate(parts))
