"""Classification figures from labels and positive-class probabilities.

The release scores a candidate with them (test figures, the accuracy and vs-production gates),
so they live in ``export``; training imports them from here for its validation figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    macro_f1: float
    roc_auc: float
    log_loss: float
    confusion: tuple[tuple[int, int], tuple[int, int]]  # rows: true 0/1, columns: predicted 0/1
    count: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        (tn, fp), (fn, tp) = self.confusion
        values = {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "roc_auc": self.roc_auc,
            "log_loss": self.log_loss,
            "tn": tn,
            "fp": fp,
            "fn": fn,
            "tp": tp,
            "count": self.count,
        }
        return {f"{prefix}_{k}": float(v) for k, v in values.items() if not math.isnan(v)}


def evaluate(
    labels: NDArray[np.int64], probabilities: NDArray[np.floating], threshold: float = 0.5
) -> Metrics:
    if len(labels) != len(probabilities) or not len(labels):
        raise ValueError("need one probability per label, and at least one")
    predicted = (probabilities >= threshold).astype(np.int64)
    both_classes = len(np.unique(labels)) == 2
    matrix = confusion_matrix(labels, predicted, labels=[0, 1])
    return Metrics(
        accuracy=float(accuracy_score(labels, predicted)),
        macro_f1=float(f1_score(labels, predicted, average="macro", zero_division=0)),
        roc_auc=float(roc_auc_score(labels, probabilities)) if both_classes else math.nan,
        log_loss=float(log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1])),
        confusion=((int(matrix[0, 0]), int(matrix[0, 1])), (int(matrix[1, 0]), int(matrix[1, 1]))),
        count=len(labels),
    )
