"""A small hand-written behavioural suite: templated clear positives and negatives, negation,
and pairs whose order must hold ("good" above "not good"). Any model is judged by the
probabilities it gives, so the suite runs on the exported ONNX model, as it will serve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

import numpy as np
from numpy.typing import NDArray

THINGS = ["food", "service", "staff", "place"]
GOOD = ["excellent", "amazing", "great", "wonderful"]
BAD = ["terrible", "awful", "horrible", "disgusting"]

HAND_WRITTEN_POSITIVE = [
    "Best meal I have had in years. Highly recommend!",
    "Friendly staff, fair prices and delicious food. We will be back.",
    "I loved everything about this place.",
    "Absolutely fantastic experience from start to finish.",
]
HAND_WRITTEN_NEGATIVE = [
    "Worst service ever. We waited an hour and the food was cold.",
    "Rude staff, dirty tables, overpriced. Never again.",
    "I would not recommend this place to anyone.",
    "Total waste of money, stay away.",
]


@dataclass(frozen=True)
class Case:
    kind: str  # positive | negative | negation | order
    text: str
    other: str | None = None  # for order: text must score above other

    def describe(self) -> str:
        if self.other is None:
            return f"{self.kind}: {self.text!r}"
        return f"order: {self.text!r} above {self.other!r}"


@dataclass(frozen=True)
class Outcome:
    case: Case
    passed: bool
    score: float
    other_score: float | None = None


@dataclass(frozen=True)
class SuiteResult:
    outcomes: list[Outcome]

    @property
    def pass_rate(self) -> float:
        return sum(o.passed for o in self.outcomes) / len(self.outcomes)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    def by_kind(self) -> dict[str, float]:
        kinds = sorted({o.case.kind for o in self.outcomes})
        return {
            kind: float(np.mean([o.passed for o in self.outcomes if o.case.kind == kind]))
            for kind in kinds
        }


def cases() -> list[Case]:
    suite: list[Case] = []
    for thing, good in product(THINGS, GOOD):
        suite.append(Case("positive", f"The {thing} was {good}."))
        suite.append(Case("negation", f"The {thing} was not {good}."))
        suite.append(Case("order", f"The {thing} was {good}.", f"The {thing} was not {good}."))
    for thing, bad in product(THINGS, BAD):
        suite.append(Case("negative", f"The {thing} was {bad}."))
    suite += [Case("positive", text) for text in HAND_WRITTEN_POSITIVE]
    suite += [Case("negative", text) for text in HAND_WRITTEN_NEGATIVE]
    return suite


def run_suite(predict: Callable[[list[str]], NDArray[np.float32]]) -> SuiteResult:
    """Score every text of the suite in one batch and judge each case."""
    suite = cases()
    texts = sorted({c.text for c in suite} | {c.other for c in suite if c.other is not None})
    scores = dict(zip(texts, predict(texts).tolist(), strict=True))
    outcomes = []
    for case in suite:
        score = scores[case.text]
        if case.kind == "positive":
            outcomes.append(Outcome(case, score > 0.5, score))
        elif case.kind in {"negative", "negation"}:
            outcomes.append(Outcome(case, score < 0.5, score))
        else:
            assert case.other is not None
            other = scores[case.other]
            outcomes.append(Outcome(case, score > other, score, other))
    return SuiteResult(outcomes)
