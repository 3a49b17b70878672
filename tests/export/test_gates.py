"""Gate decisions and their messages, and the behavioural suite, on plain numbers."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from export import gates
from export.behaviour import cases, run_suite
from export.settings import CHALLENGER_ALIAS, DEFAULT_ALIAS, DEFAULT_MODEL_NAME
from inference import registry


def test_export_defaults_match_the_registry_conventions() -> None:
    assert (DEFAULT_MODEL_NAME, DEFAULT_ALIAS) == (
        registry.DEFAULT_MODEL_NAME,
        registry.DEFAULT_ALIAS,
    )


def test_each_gate_says_pass_or_fail_and_by_how_much() -> None:
    assert gates.accuracy_floor(0.9535, 0.95).passed
    low = gates.accuracy_floor(0.9412, 0.95)
    assert not low.passed
    assert low.detail == "test accuracy 0.9412 is below the floor 0.9500 by 0.0088"
    assert gates.versus_production(0.95, None, None, 0.005).passed
    assert gates.versus_production(0.951, 0.955, "3", 0.005).passed
    worse = gates.versus_production(0.94, 0.955, "3", 0.005)
    assert not worse.passed
    assert "worse than production v3 0.9550" in worse.detail
    assert "by 0.0150, more than the margin 0.0050" in worse.detail
    assert gates.parity(2e-7, 1e-4).passed
    assert not gates.parity(0.2, 1e-4).passed
    slow = gates.latency(80.0, 50.0)
    assert not slow.passed
    assert "over the budget 50.000 ms by 30.000 ms" in slow.detail


def test_the_behaviour_suite_tells_a_sensible_model_from_a_random_one() -> None:
    good_words = ["excellent", "amazing", "great", "wonderful", "best", "loved", "fantastic"]
    good_words.append("friendly")

    def sensible(texts: list[str]) -> NDArray[np.float32]:
        def score(text: str) -> float:
            t = text.lower()
            if "not " in t or "never" in t or "worst" in t:
                return 0.1
            return 0.9 if any(w in t for w in good_words) else 0.2

        return np.array([score(t) for t in texts], dtype=np.float32)

    def random(texts: list[str]) -> NDArray[np.float32]:
        return np.random.default_rng(0).random(len(texts)).astype(np.float32)

    assert len(cases()) >= 60
    result = run_suite(sensible)
    assert result.pass_rate == 1.0
    assert set(result.by_kind()) == {"positive", "negative", "negation", "order"}
    assert gates.behaviour(result, 0.9).passed
    chance = gates.behaviour(run_suite(random), 0.9)
    assert not chance.passed
    assert "below the 90% needed by" in chance.detail
    assert "failing e.g." in chance.detail


def test_the_challenger_alias_agrees_with_the_registry_conventions() -> None:
    assert CHALLENGER_ALIAS == registry.CHALLENGER_ALIAS
