"""What the drift monitor compares: per-request features, and a version's reference profile.

A worker computes the :class:`RequestFeatures` of each review while it has the text (the text
itself never reaches the statistics). Export computes a :class:`Profile` from held-out
reviews and ships it in the bundle (``profile.json``): for each feature, the bin edges and the
share of held-out reviews in each bin, which live traffic is compared against; and which
n-gram buckets (fast model) or word pieces (accurate model) training ever saw, so that the
share of a review the model does not know can be measured. A bundle without a profile is
served as before and reported as unmonitored.
"""

from __future__ import annotations

import base64
import json
import logging
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contracts import HistogramSpec, ReferenceProfile, RequestFeatures
from inference.preprocessing import HashedNgrams, Inputs, Preprocessor, WordPiece

log = logging.getLogger(__name__)

PROFILE_FILE = "profile.json"
PROFILE_VERSION = 1

# Fixed edges where the meaning is fixed; length's edges are the held-out deciles.
CONFIDENCE_EDGES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]
UNKNOWN_EDGES = [0.0, 1e-9, 0.02, 0.05, 0.1, 0.2, 0.4]
POSITIVE_EDGES = [0.0, 0.5]
FEATURES = ("confidence", "positive", "length", "unknown_share")


def describe(
    preprocessor: Preprocessor, inputs: Inputs, known: NDArray[np.bool_] | None
) -> list[RequestFeatures]:
    """The features of each row of an encoded batch, from the ids the model looked up (so the
    worker pays nothing for them but a lookup): the review's length (words for the fast
    model, word pieces for the accurate one) and the share of those ids never seen in
    training (None without a profile)."""
    if isinstance(preprocessor, HashedNgrams):
        ids, real = inputs["ids"], inputs["mask"] > 0  # w unigrams and w - 1 bigrams
        lengths = [(int(n) + 1) // 2 for n in real.sum(axis=1)]
    elif isinstance(preprocessor, WordPiece):
        ids, real = inputs["input_ids"], inputs["attention_mask"] > 0
        real = real & (ids != preprocessor.cls_id) & (ids != preprocessor.sep_id)
        lengths = [int(n) for n in real.sum(axis=1)]
    else:
        raise ValueError(f"no features for {type(preprocessor).__name__}")
    features = []
    for row, length in enumerate(lengths):
        looked_up = ids[row][real[row]]
        unknown = None
        if known is not None:
            unknown = float(np.mean(~known[looked_up])) if len(looked_up) else 0.0
        features.append(RequestFeatures(words=length, unknown_share=unknown))
    return features


def seen_ids(preprocessor: Preprocessor, inputs: Inputs) -> NDArray[np.int64]:
    if isinstance(preprocessor, HashedNgrams):
        return np.asarray(inputs["ids"][inputs["mask"] > 0], dtype=np.int64)
    return np.asarray(inputs["input_ids"][inputs["attention_mask"] > 0], dtype=np.int64)


def vocabulary_size(preprocessor: Preprocessor) -> int:
    if isinstance(preprocessor, HashedNgrams):
        return preprocessor.buckets
    if isinstance(preprocessor, WordPiece):
        return preprocessor.vocabulary_size()
    raise ValueError(f"no vocabulary for {type(preprocessor).__name__}")


@dataclass(frozen=True)
class Histogram:
    """Bins ``[edges[i], edges[i+1])``, the last one open-ended, and the reference share
    of each."""

    edges: list[float]
    shares: list[float]

    def bin_of(self, value: float) -> int:
        return max(0, bisect_right(self.edges, value) - 1)

    @classmethod
    def of(cls, values: Sequence[float], edges: Sequence[float]) -> Histogram:
        counts = np.zeros(len(edges))
        probe = cls(list(edges), [])
        for value in values:
            counts[probe.bin_of(value)] += 1
        return cls(list(map(float, edges)), (counts / max(1, len(values))).tolist())


@dataclass(frozen=True)
class Profile:
    histograms: dict[str, Histogram]
    accuracy: float
    """on the held-out reviews: the live-accuracy monitor's reference"""
    size: int
    known: NDArray[np.bool_]
    """known[i]: training saw piece/bucket i"""

    def summary(self) -> ReferenceProfile:
        """What the drift monitor needs (no vocabulary): small enough for a registry tag."""
        return ReferenceProfile(
            size=self.size,
            accuracy=self.accuracy,
            histograms={
                name: HistogramSpec(edges=h.edges, shares=h.shares)
                for name, h in self.histograms.items()
            },
        )

    def save(self, path: Path) -> Path:
        packed = base64.b64encode(np.packbits(self.known).tobytes()).decode()
        body: dict[str, Any] = {
            "profile_version": PROFILE_VERSION,
            "summary": self.summary().model_dump(mode="json"),
            "vocabulary": len(self.known),
            "known": packed,
        }
        path.write_text(json.dumps(body))
        return path

    @classmethod
    def load(cls, path: Path) -> Profile:
        body = json.loads(path.read_text())
        if body.get("profile_version") != PROFILE_VERSION:
            raise ValueError(f"unsupported profile version {body.get('profile_version')!r}")
        summary = ReferenceProfile.model_validate(body["summary"])
        bits = np.frombuffer(base64.b64decode(body["known"]), dtype=np.uint8)
        known = np.unpackbits(bits)[: int(body["vocabulary"])].astype(bool)
        return cls(histograms(summary), summary.accuracy, summary.size, known)


def histograms(profile: ReferenceProfile) -> dict[str, Histogram]:
    return {name: Histogram(h.edges, h.shares) for name, h in profile.histograms.items()}


def load_profile(bundle_dir: Path) -> Profile | None:
    """The bundle's profile, or None (unmonitored, served all the same) for a bundle exported
    before profiles existed or with a profile this code cannot read."""
    path = bundle_dir / PROFILE_FILE
    if not path.is_file():
        return None
    try:
        return Profile.load(path)
    except (ValueError, KeyError) as exc:  # pydantic's ValidationError is a ValueError
        log.warning("%s is unreadable (%s): the version is served unmonitored", path, exc)
        return None


def feature_columns(
    probabilities: NDArray[np.float64],
    labels: NDArray[np.float64],
    words: NDArray[np.float64],
    unknown_shares: NDArray[np.float64],
) -> dict[str, NDArray[np.float64]]:
    """Predictions as the values the histograms bin, a column per feature (one array per
    field of theirs, in the same order)."""
    return {
        "confidence": np.maximum(probabilities, 1.0 - probabilities),
        "positive": labels,
        "length": words,
        "unknown_share": unknown_shares,
    }


def feature_values(probability: float, label: int, features: RequestFeatures) -> dict[str, float]:
    """One prediction as the values the histograms bin."""
    unknown = features.unknown_share if features.unknown_share is not None else 0.0
    columns = feature_columns(
        *(np.array([float(v)]) for v in (probability, label, features.words, unknown))
    )
    return {name: float(column[0]) for name, column in columns.items()}


def build_profile(
    preprocessor: Preprocessor,
    *,
    training_texts: Iterable[str],
    held_out_texts: Sequence[str],
    held_out_labels: Sequence[int],
    held_out_probabilities: Sequence[float],
    threshold: float = 0.5,
) -> Profile:
    """The reference a version is watched against, from reviews it was not trained on."""
    known = np.zeros(vocabulary_size(preprocessor), dtype=bool)
    for batch in _batches(list(training_texts)):
        known[seen_ids(preprocessor, preprocessor.encode(batch))] = True
    texts = list(held_out_texts)
    features = [
        f
        for batch in _batches(texts)
        for f in describe(preprocessor, preprocessor.encode(batch), known)
    ]
    rows = []
    for p, f in zip(held_out_probabilities, features, strict=True):
        rows.append(feature_values(p, 1 if p >= threshold else 0, f))
    lengths = [r["length"] for r in rows]
    length_edges = sorted({0.0, *np.quantile(lengths, np.linspace(0.1, 0.9, 9)).round().tolist()})
    edges = {
        "confidence": CONFIDENCE_EDGES,
        "positive": POSITIVE_EDGES,
        "length": length_edges,
        "unknown_share": UNKNOWN_EDGES,
    }
    predicted = [1 if p >= threshold else 0 for p in held_out_probabilities]
    correct = sum(int(a == b) for a, b in zip(predicted, held_out_labels, strict=True))
    return Profile(
        histograms={name: Histogram.of([r[name] for r in rows], edges[name]) for name in FEATURES},
        accuracy=correct / max(1, len(held_out_labels)),
        size=len(rows),
        known=known,
    )


def _batches(texts: list[str], size: int = 256) -> Iterable[list[str]]:
    # Batches of similar texts pad little; the order does not matter for counting.
    for start in range(0, len(texts), size):
        yield texts[start : start + size]
