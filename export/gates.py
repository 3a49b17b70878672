"""The gates a model version must pass before it may serve. Pure functions of measurements:
each returns a :class:`Gate` that says pass or fail, the value, the threshold and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

from export.behaviour import SuiteResult


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    value: float
    threshold: float
    detail: str

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"


def accuracy_floor(accuracy: float, floor: float) -> Gate:
    gap = accuracy - floor
    if gap >= 0:
        detail = f"test accuracy {accuracy:.4f} meets the floor {floor:.4f} (+{gap:.4f})"
    else:
        detail = f"test accuracy {accuracy:.4f} is below the floor {floor:.4f} by {-gap:.4f}"
    return Gate("accuracy_floor", gap >= 0, accuracy, floor, detail)


def versus_production(
    accuracy: float,
    production_accuracy: float | None,
    production_version: str | None,
    margin: float,
) -> Gate:
    if production_accuracy is None or production_version is None:
        return Gate("vs_production", True, accuracy, 0.0, "no production version to compare with")
    least = production_accuracy - margin
    gap = accuracy - least
    versus = f"production v{production_version} {production_accuracy:.4f} on the same test set"
    if gap >= 0:
        detail = f"test accuracy {accuracy:.4f} vs {versus}: within the margin {margin:.4f}"
    else:
        detail = (
            f"test accuracy {accuracy:.4f} is worse than {versus} by "
            f"{production_accuracy - accuracy:.4f}, more than the margin {margin:.4f} "
            f"(short by {-gap:.4f})"
        )
    return Gate("vs_production", gap >= 0, accuracy, least, detail)


def parity(max_abs_diff: float, tolerance: float) -> Gate:
    ok = max_abs_diff <= tolerance
    relation = "within" if ok else f"over by {max_abs_diff - tolerance:.3g} the"
    detail = f"max |ONNX - torch| on the reference set {max_abs_diff:.3g}, {relation} tolerance"
    return Gate("parity", ok, max_abs_diff, tolerance, f"{detail} {tolerance:.3g}")


def latency(ms_per_review: float, budget_ms: float) -> Gate:
    ok = ms_per_review <= budget_ms
    if ok:
        detail = f"{ms_per_review:.3f} ms per review within the budget {budget_ms:.3f} ms"
    else:
        detail = (
            f"{ms_per_review:.3f} ms per review is over the budget {budget_ms:.3f} ms "
            f"by {ms_per_review - budget_ms:.3f} ms"
        )
    return Gate("latency", ok, ms_per_review, budget_ms, detail)


def behaviour(result: SuiteResult, min_pass_rate: float) -> Gate:
    rate = result.pass_rate
    failures = result.failures()
    total = len(result.outcomes)
    kinds = ", ".join(f"{k} {v:.0%}" for k, v in result.by_kind().items())
    head = f"{total - len(failures)}/{total} cases pass ({rate:.1%}; {kinds})"
    if rate >= min_pass_rate:
        detail = f"{head}, at least {min_pass_rate:.0%} needed"
    else:
        detail = f"{head}, below the {min_pass_rate:.0%} needed by {min_pass_rate - rate:.1%}"
    if failures:
        shown = "; ".join(f"{o.case.describe()} scored {o.score:.2f}" for o in failures[:3])
        detail += f"; failing e.g. {shown}"
    return Gate("behaviour", rate >= min_pass_rate, rate, min_pass_rate, detail)


def live_replay(
    accuracy: float,
    production_accuracy: float | None,
    production_version: str | None,
    *,
    reviews: int,
    min_reviews: int,
    margin: float,
) -> Gate:
    """The candidate against production on the most recent labelled live reviews."""
    if production_version is None or production_accuracy is None:
        return Gate("live_replay", True, accuracy, 0.0, "no production version to compare with")
    if reviews < min_reviews:
        detail = f"{reviews} labelled live reviews, fewer than the {min_reviews} needed to judge"
        return Gate("live_replay", True, float(reviews), float(min_reviews), detail)
    least = production_accuracy - margin
    gap = accuracy - least
    versus = (
        f"production v{production_version} {production_accuracy:.4f} on the {reviews} most "
        "recent labelled live reviews"
    )
    if gap >= 0:
        detail = f"live accuracy {accuracy:.4f} vs {versus}: within the margin {margin:.4f}"
    else:
        detail = (
            f"live accuracy {accuracy:.4f} is worse than {versus} by "
            f"{production_accuracy - accuracy:.4f}, more than the margin {margin:.4f}"
        )
    return Gate("live_replay", gap >= 0, accuracy, least, detail)
