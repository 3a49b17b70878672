"""The drift tests: quiet on traffic like the reference, loud on traffic unlike it."""

from __future__ import annotations

import numpy as np
import pytest

from inference.monitoring import Histogram
from stats.drift import DriftMonitor, DriftSettings, check_accuracy, compare

REFERENCE = {"x": Histogram([0.0, 1.0, 2.0, 3.0], [0.4, 0.3, 0.2, 0.1])}


def stream(shares: list[float], count: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [{"x": float(v)} for v in rng.choice(4, size=count, p=shares)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_traffic_like_the_reference_raises_no_alarm(seed: int) -> None:
    monitor = DriftMonitor(REFERENCE, 3000, DriftSettings())
    checks = [c for v in stream([0.4, 0.3, 0.2, 0.1], 5000, seed) for c in monitor.add(v) or []]
    assert len(checks) == (5000 - 300) // 25 + 1
    assert not any(c.alarm for c in checks)
    assert max(c.score for c in checks) < 0.15


def test_shifted_traffic_alarms_within_a_window() -> None:
    monitor = DriftMonitor(REFERENCE, 3000, DriftSettings())
    for v in stream([0.4, 0.3, 0.2, 0.1], 400, seed=0):
        assert not any(c.alarm for c in monitor.add(v) or [])
    shifted = stream([0.1, 0.2, 0.3, 0.4], 300, seed=1)
    first = next(i for i, v in enumerate(shifted) if any(c.alarm for c in monitor.add(v) or []))
    assert first < 300
    print(f"alarm after {first + 1} shifted predictions")


def test_no_check_before_the_window_is_full_then_one_every_step() -> None:
    monitor = DriftMonitor(REFERENCE, 100, DriftSettings(window=50, step=10))
    results = [monitor.add({"x": 0.0}) for _ in range(70)]
    assert [i + 1 for i, r in enumerate(results) if r is not None] == [50, 60, 70]


@pytest.mark.parametrize("batch", [1, 7, 25, 300, 2000])
def test_a_batch_gets_the_checks_of_its_predictions_added_one_by_one(batch: int) -> None:
    values = stream([0.3, 0.3, 0.2, 0.2], 2500, seed=3)
    one_by_one = DriftMonitor(REFERENCE, 3000, DriftSettings())
    expected = [(i, c) for i, v in enumerate(values) for c in one_by_one.add(v) or []]
    batched = DriftMonitor(REFERENCE, 3000, DriftSettings())
    got = []
    for start in range(0, len(values), batch):
        column = np.array([v["x"] for v in values[start : start + batch]])
        got += [(start + due.index, c) for due in batched.add_many({"x": column})
                for c in due.results]  # fmt: skip
    assert [i for i, _ in got] == [i for i, _ in expected]
    for (_, mine), (_, theirs) in zip(got, expected, strict=True):
        assert mine.alarm == theirs.alarm
        assert mine.score == pytest.approx(theirs.score)
        assert mine.p_value == pytest.approx(theirs.p_value)


def test_a_bin_the_reference_never_saw_does_not_break_the_measures() -> None:
    reference = Histogram([0.0, 1.0], [1.0, 0.0])
    (drift,) = compare(np.array([[0.0, 50.0]]), reference, reference_size=100, alpha=1e-4,
                       min_score=0.15, feature="x")  # fmt: skip
    assert np.isfinite(drift.score)
    assert drift.alarm


def test_live_accuracy_alarms_only_when_surely_below_the_reference() -> None:
    assert not check_accuracy(188, 200, reference=0.95, margin=0.03).alarm  # 94%: noise
    low = check_accuracy(150, 200, reference=0.95, margin=0.03)  # 75%
    assert low.alarm
    assert low.upper < 0.92
    assert not check_accuracy(7, 10, reference=0.95, margin=0.03).alarm  # too few labels yet
    assert check_accuracy(35, 50, reference=0.95, margin=0.03).alarm
    assert not check_accuracy(0, 0, reference=0.95, margin=0.03).alarm
