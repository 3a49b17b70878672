"""How soon the drift monitor notices a change of domain, and that it stays quiet without one.

    .venv/bin/python -m benchmarks.drift --bundle PATH [--seeds 0,1,2] [--switch-after 1000]

``PATH`` is a bundle with a reference profile (what ``make train`` registers; a trained
version's files are under its MLflow run's ``bundle/``). The replay runs in process, through
the code the services run: the worker's ``OnnxPredictor.predict_described`` gives each
review's probability and features, and the stats processor's ``DriftMonitor`` and
``check_accuracy``, with their default settings, judge the stream (Kafka and PostgreSQL add
nothing to what is decided; ``tests/stats/test_monitoring.py`` checks that plumbing).

1. The shared Yelp test file in random order, once per seed: every check, any alarm?
2. Yelp, then each file of ``other_domain/`` (shuffled): the reviews after the switch until
   each feature first alarms, and the labelled reviews until live accuracy alarms (every
   review labelled, a check after each).

Prints a table and writes ``.artifacts/bench/drift.json``; asserts nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from benchmarks.data import load_reviews
from contracts.reviewfiles import shared_data
from inference import OnnxPredictor, load_bundle
from inference.monitoring import feature_values
from stats.drift import DriftMonitor, DriftSettings, check_accuracy

ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "bench"
OTHER_DOMAINS = [
    "amazon_multidomain",
    "imdb_cad_orig",
    "movie_review_polarity_v2",
    "uci_amazon_imdb_sentences",
]

app = typer.Typer(add_completion=False)


def replay(
    predictor: OnnxPredictor, reviews: list[tuple[str, int]], settings: DriftSettings
) -> tuple[list[list[Any]], list[int]]:
    """Each check's results, and for each review whether the model was right."""
    profile = predictor.profile
    assert profile is not None
    monitor = DriftMonitor(profile.histograms, profile.size, settings)
    probabilities, features = predictor.predict_described([t for t, _ in reviews])
    checks: list[list[Any]] = []
    correct: list[int] = []
    for (_, label), p, f in zip(reviews, probabilities, features, strict=True):
        predicted = int(p >= 0.5)
        correct.append(int(predicted == label))
        checks.append(monitor.add(feature_values(float(p), predicted, f)) or [])
    return checks, correct


def shuffle(reviews: list[tuple[str, int]], seed: int) -> list[tuple[str, int]]:
    return [reviews[i] for i in np.random.default_rng(seed).permutation(len(reviews))]


def first_accuracy_alarm(
    correct: list[int], start: int, reference: float, settings: DriftSettings
) -> int | None:
    for i in range(start, len(correct)):
        window = correct[max(0, i - settings.accuracy_window + 1) : i + 1]
        check = check_accuracy(sum(window), len(window), reference=reference,
                               margin=settings.accuracy_margin,
                               min_labelled=settings.accuracy_min_labelled)  # fmt: skip
        if check.alarm:
            return i - start + 1
    return None


@app.command()
def main(
    bundle: Annotated[Path, typer.Option(help="a bundle folder with profile.json")],
    seeds: Annotated[str, typer.Option(help="comma-separated seeds of the Yelp replays")] = "0,1,2",
    switch_after: Annotated[int, typer.Option(help="Yelp reviews before the switch")] = 1000,
) -> None:
    predictor = OnnxPredictor(load_bundle(bundle))
    profile = predictor.profile
    if profile is None:
        raise typer.BadParameter(f"{bundle} has no reference profile")
    settings = DriftSettings()
    yelp = load_reviews(shared_data("yelp/test.csv.gz"))
    report: dict[str, Any] = {"settings": settings.__dict__, "reference": profile.summary()
                              .model_dump(mode="json"), "yelp": [], "switches": []}  # fmt: skip

    print(f"window {settings.window}, a check every {settings.step}; alarm when p < "
          f"{settings.alpha:g} and PSI >= {settings.min_score:g}")  # fmt: skip
    for seed in (int(s) for s in seeds.split(",")):
        shuffled = shuffle(yelp, seed)
        checks, correct = replay(predictor, shuffled, settings)
        flat = [c for cs in checks for c in cs]
        worst = {f: max(c.score for c in flat if c.feature == f) for f in profile.histograms}
        alarms = sum(c.alarm for c in flat)
        accuracy = first_accuracy_alarm(correct, 0, profile.accuracy, settings)
        report["yelp"].append({"seed": seed, "reviews": len(shuffled), "checks": len(flat),
                               "alarms": alarms, "max_psi": worst,
                               "accuracy_alarm_after": accuracy})  # fmt: skip
        print(f"Yelp test, seed {seed}: {len(shuffled)} reviews, {len(flat)} checks, "
              f"{alarms} alarms, accuracy alarm: {accuracy}; largest PSI "
              + ", ".join(f"{f} {v:.3f}" for f, v in worst.items()))  # fmt: skip

    head = yelp[:switch_after]
    for name in OTHER_DOMAINS:
        other = shuffle(load_reviews(shared_data(f"other_domain/{name}.csv.gz")), 0)
        checks, correct = replay(predictor, head + other[:2000], settings)
        delay: dict[str, int | None] = dict.fromkeys(profile.histograms)
        for i, results in enumerate(checks[switch_after:], start=1):
            for c in results:
                if c.alarm and delay[c.feature] is None:
                    delay[c.feature] = i
        before = sum(c.alarm for cs in checks[:switch_after] for c in cs)
        accuracy = first_accuracy_alarm(correct, switch_after, profile.accuracy, settings)
        seen = [d for d in delay.values() if d is not None]
        live = sum(correct[switch_after:]) / max(1, len(correct) - switch_after)
        report["switches"].append({"file": name, "alarms_before": before, "delay": delay,
                                   "first": min(seen) if seen else None,
                                   "accuracy_alarm_after": accuracy,
                                   "accuracy_after_switch": live})  # fmt: skip
        print(f"Yelp -> {name}: first alarm after {min(seen) if seen else 'none'} reviews ("
              + ", ".join(f"{f} {d}" for f, d in delay.items())
              + f"); accuracy {live:.3f}, its alarm after {accuracy} labelled")  # fmt: skip

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "drift.json").write_text(json.dumps(report, indent=1))
    print(f"written {ARTIFACTS / 'drift.json'}")


if __name__ == "__main__":
    app()
