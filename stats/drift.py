"""Is live traffic still like the reviews a version was checked on? A test per feature.

Per model version, the last ``window`` predictions' features are binned with the bins of the
version's reference profile (``inference.monitoring``), and every ``step`` predictions each
feature's window is compared with the reference shares by two measures:

- Pearson's chi-square goodness-of-fit test: is the difference more than sampling noise? Its
  p-value (the chi-square survival function, ``scipy.special.chdtrc``: the ufunc under
  ``scipy.stats.chisquare``, without its per-call overhead of a millisecond) says so,
  whatever the number of bins.
- The population stability index (PSI, the symmetric Kullback-Leibler divergence of the two
  bin distributions, from ``scipy.special.rel_entr``): how large is the difference? It is the
  score that the metrics and the charts show (rule of thumb: < 0.1 stable, > 0.25 shifted).

A feature alarms when both agree: p < ``alpha`` and PSI >= ``min_score``. The test alone would
alarm on harmless differences once windows are large, and the score alone on noise in small
windows. Why these and not a stream change detector (ADWIN, Page-Hinkley): those find a change
*within* the stream, so traffic that was unlike the training data from the first review never
alarms; here the reference is what the version was validated on.

Live accuracy is watched the same way over the last labelled predictions: it alarms when the
upper end of its Wilson 95% interval (``scipy.stats.binomtest``) falls below the reference
accuracy minus ``accuracy_margin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc, rel_entr
from scipy.stats import binomtest

from inference.monitoring import Histogram


@dataclass(frozen=True)
class DriftSettings:
    window: int = 300
    step: int = 25
    alpha: float = 1e-4
    min_score: float = 0.15
    accuracy_window: int = 200
    accuracy_margin: float = 0.03
    accuracy_min_labelled: int = 50


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    score: float
    """PSI of the window against the reference"""
    p_value: float
    alarm: bool


def compare(counts: np.ndarray, reference: Histogram, *, reference_size: int,
            alpha: float, min_score: float, feature: str) -> list[FeatureDrift]:  # fmt: skip
    """Windows' bin counts (a row per window, all of one size) against the reference shares."""
    k, n = counts.shape[1], counts[0].sum()
    # Add half a review to every bin on both sides: a bin the reference never saw must not
    # make the divergence infinite, nor the expected count zero.
    expected = (np.asarray(reference.shares) * reference_size + 0.5) / (reference_size + 0.5 * k)
    observed = (counts + 0.5) / (n + 0.5 * k)
    scores = (rel_entr(observed, expected) + rel_entr(expected, observed)).sum(axis=1)
    expected_counts = expected * n
    statistics = ((counts - expected_counts) ** 2 / expected_counts).sum(axis=1)
    p_values = chdtrc(k - 1, statistics)
    return [
        FeatureDrift(feature, float(score), float(p), bool(p < alpha and score >= min_score))
        for score, p in zip(scores, p_values, strict=True)
    ]


@dataclass(frozen=True)
class DueCheck:
    index: int
    """the prediction of the batch after which the check came due"""
    results: list[FeatureDrift]
    """each feature's"""


class DriftMonitor:
    """The sliding windows of one model version."""

    def __init__(
        self, histograms: dict[str, Histogram], reference_size: int, settings: DriftSettings
    ) -> None:
        self.histograms = histograms
        self.reference_size = reference_size
        self.settings = settings
        self._edges = {name: np.asarray(h.edges) for name, h in histograms.items()}
        self._recent = {name: np.empty(0, dtype=np.intp) for name in histograms}
        """each feature's bins of the last ``window`` predictions"""
        self.seen = 0

    def add(self, values: dict[str, float]) -> list[FeatureDrift] | None:
        """Take one prediction's feature values; every ``step`` predictions once the window
        is full, the comparison of each feature."""
        due = self.add_many({name: np.array([value]) for name, value in values.items()})
        return due[0].results if due else None

    def add_many(self, columns: Mapping[str, np.ndarray]) -> list[DueCheck]:
        """Take a batch of predictions' feature values in order, a column per feature; the
        comparisons that came due within it, as if they were added one by one. The windows of
        all the checks are compared at once: a batch of thousands costs a few array passes."""
        s = self.settings
        first = self.seen
        self.seen += len(next(iter(columns.values())))
        # The counts of predictions after which a check is due: multiples of step, window full.
        start = -(-max(first + 1, s.window) // s.step) * s.step
        due = np.arange(start, self.seen + 1, s.step)
        results: list[list[FeatureDrift]] = []
        for name, histogram in self.histograms.items():
            bins = np.maximum(np.searchsorted(self._edges[name], columns[name], "right") - 1, 0)
            held = np.concatenate([self._recent[name], bins])
            if len(due):
                # Window counts from cumulative one-hot counts: row i counts held[:i].
                k = len(histogram.shares)
                cumulative = np.zeros((len(held) + 1, k))
                cumulative[1:] = np.cumsum(np.eye(k)[held], axis=0)
                ends = due - first + len(self._recent[name])
                counts = cumulative[ends] - cumulative[ends - s.window]
                results.append(compare(counts, histogram, reference_size=self.reference_size,
                                       alpha=s.alpha, min_score=s.min_score,
                                       feature=name))  # fmt: skip
            self._recent[name] = held[-s.window :]
        return [
            DueCheck(int(m - first - 1), [feature[i] for feature in results])
            for i, m in enumerate(due)
        ]


@dataclass(frozen=True)
class AccuracyCheck:
    labelled: int
    accuracy: float
    upper: float
    """upper end of the Wilson 95% interval"""
    alarm: bool


def check_accuracy(
    correct: int, labelled: int, *, reference: float, margin: float, min_labelled: int = 50
) -> AccuracyCheck:
    """Live accuracy over the last labelled predictions against the version's reference.
    Checked again and again as labels come, so a few labels never alarm: ``min_labelled``."""
    if labelled == 0:
        return AccuracyCheck(0, float("nan"), 1.0, False)
    interval = binomtest(correct, labelled).proportion_ci(confidence_level=0.95, method="wilson")
    upper = float(interval.high)
    alarm = labelled >= min_labelled and upper < reference - margin
    return AccuracyCheck(labelled, correct / labelled, upper, alarm)
