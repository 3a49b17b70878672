"""From a trained torch model to a registered, gated and (maybe) promoted model version.

export to ONNX -> bundle with a reference set -> parity, test accuracy, latency and behaviour
measured on the ONNX model as it will serve -> compared with production on the same test set
-> registered with every gate as a tag -> the alias moves only if every gate passed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from numpy.typing import NDArray
from torch import nn

from export import gates as gate
from export.behaviour import SuiteResult, run_suite
from export.evaluation import Metrics, evaluate
from export.insight_plots import bar_chart, distribution_plot
from export.insights import Insights, insights
from export.onnx import export_onnx, torch_probabilities
from export.profile import ProfileData, write_profile
from export.registry import AliasMove, promote, record_gates
from export.replay import replay_gate
from export.settings import Settings
from inference import (
    Bundle,
    BundleError,
    OnnxPredictor,
    Preprocessor,
    explainer_for,
    write_bundle,
)
from inference.bundle import WEIGHTS_FILE
from inference.registry import download_bundle, register_bundle, serving_version

logger = logging.getLogger(__name__)

EVAL_BATCH = 256
LATENCY_BATCH = 32
REFERENCE_EXTRAS = ["Great!", "Not good at all.", ""]


@dataclass(frozen=True)
class Candidate:
    """A trained model and what serving it needs."""

    model: nn.Module
    family: str
    preprocessor: Preprocessor
    bundle_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class HeldOut:
    texts: list[str]
    labels: NDArray[np.int64]
    digest: str


@dataclass(frozen=True)
class Release:
    version: ModelVersion
    bundle: Bundle
    gates: list[gate.Gate]
    test: Metrics
    promoted: AliasMove | None

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def failures(self) -> list[gate.Gate]:
        return [g for g in self.gates if not g.passed]


def release(
    client: MlflowClient,
    *,
    run_id: str,
    candidate: Candidate,
    test: HeldOut,
    reference_texts: list[str],
    settings: Settings,
    workdir: Path,
    promote_if_passed: bool,
    by: str,
    profile: ProfileData | None = None,
) -> Release:
    bundle, parity_diff = build_bundle(
        candidate, reference_texts, settings, workdir, run_id, profile=profile
    )
    fast_predictor = OnnxPredictor(bundle, intra_op_threads=os.cpu_count() or 1)
    probabilities = _predict_all(fast_predictor, test.texts)
    metrics = evaluate(test.labels, probabilities)
    ms_per_review = measure_latency(OnnxPredictor(bundle), test.texts[: settings.latency_sample])
    suite = run_suite(fast_predictor.predict)
    production_accuracy, production_version, production_error = _production_accuracy(
        client, settings, test, workdir
    )
    gates = [
        gate.accuracy_floor(metrics.accuracy, settings.accuracy_floor),
        gate.versus_production(
            metrics.accuracy, production_accuracy, production_version, settings.production_margin
        ),
        gate.parity(parity_diff, settings.parity_tolerance),
        gate.latency(ms_per_review, settings.latency_budget_ms),
        gate.behaviour(suite, settings.behaviour_min_pass_rate),
    ]
    if production_error is not None:
        gates[1] = gate.Gate("vs_production", False, metrics.accuracy, 0.0, production_error)
    live = _live_replay(client, settings, fast_predictor, workdir)
    if live is not None:
        gates.append(live)
    _log_to_run(client, run_id, metrics, gates, suite, parity_diff, ms_per_review, workdir)
    log_insights(client, run_id, fast_predictor, test.texts, settings, workdir / "explanations")
    version = register_bundle(client, run_id=run_id, bundle=bundle, model_name=settings.model_name)
    for key, value in {
        "family": candidate.family,
        "test_accuracy": f"{metrics.accuracy:.6f}",
        "test_data_digest": test.digest,
    }.items():
        client.set_model_version_tag(settings.model_name, str(version.version), key, value)
    passed = record_gates(client, version, gates)
    for g in gates:
        logger.info("gate %s: %s - %s", g.name, g.status, g.detail)
    moved = None
    if passed and promote_if_passed:
        moved = promote(
            client,
            settings.model_name,
            str(version.version),
            alias=settings.alias,
            by=by,
            reason=f"every gate passed; trained in run {run_id}",
        )
    version = client.get_model_version(settings.model_name, str(version.version))
    return Release(version=version, bundle=bundle, gates=gates, test=metrics, promoted=moved)


def build_bundle(
    candidate: Candidate,
    reference_texts: list[str],
    settings: Settings,
    workdir: Path,
    run_id: str,
    *,
    profile: ProfileData | None = None,
) -> tuple[Bundle, float]:
    """Export, write the bundle with torch's answers as its reference (and, given the data, a
    reference profile for the drift monitor); return the parity gap."""
    texts = [*reference_texts, *REFERENCE_EXTRAS]
    onnx_file = export_onnx(candidate.model, candidate.preprocessor, workdir / "model.onnx")
    weights = tuple(w for w in (onnx_file.parent / WEIGHTS_FILE,) if w.exists())
    expected = torch_probabilities(candidate.model, candidate.preprocessor, texts)

    def write(extra_files: tuple[Path, ...]) -> Bundle:
        return write_bundle(
            workdir / "bundle",
            model_file=onnx_file,
            family=candidate.family,
            preprocessing=candidate.preprocessor.config(),
            reference_texts=texts,
            reference_probabilities=[float(p) for p in expected],
            extra_files=extra_files,
            tolerance=settings.parity_tolerance,
            metadata={"run_id": run_id},
        )

    bundle = write((*weights, *candidate.bundle_files))
    predictor = OnnxPredictor(bundle)
    actual = predictor.predict(texts)
    parity_diff = float(np.max(np.abs(actual - expected)))
    logger.info("parity: max |ONNX - torch| = %.3g on %d texts", parity_diff, len(texts))
    if profile is not None:  # measured on the model as it serves, then shipped beside it
        profile_file = write_profile(predictor, profile, workdir)
        bundle = write((*weights, *candidate.bundle_files, profile_file))
    return bundle, parity_diff


def measure_latency(predictor: OnnxPredictor, texts: list[str]) -> float:
    """Mean milliseconds per review (preprocessing + session.run), batches of 32, 1 thread."""
    if not texts:
        return 0.0
    predictor.predict(texts[:LATENCY_BATCH])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), LATENCY_BATCH):
        predictor.predict(texts[start : start + LATENCY_BATCH])
    return (time.perf_counter() - started) * 1000 / len(texts)


def _predict_all(predictor: OnnxPredictor, texts: list[str]) -> NDArray[np.float32]:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros(len(texts), dtype=np.float32)
    for start in range(0, len(order), EVAL_BATCH):
        index = order[start : start + EVAL_BATCH]
        out[index] = predictor.predict([texts[i] for i in index])
    return out


def _production_accuracy(
    client: MlflowClient, settings: Settings, test: HeldOut, workdir: Path
) -> tuple[float | None, str | None, str | None]:
    """(accuracy, version, error) of the serving version on the same test set."""
    try:
        event = serving_version(client, settings.model_name, settings.alias)
        if event is None:
            return None, None, None
        bundle = download_bundle(event, workdir / f"production-v{event.version}")
        predictor = OnnxPredictor(bundle, intra_op_threads=os.cpu_count() or 1)
        accuracy = evaluate(test.labels, _predict_all(predictor, test.texts)).accuracy
    except (MlflowException, BundleError, OSError, ValueError) as exc:
        return None, None, f"the production version could not be evaluated: {exc}"
    logger.info("production v%s: test accuracy %.4f", event.version, accuracy)
    return accuracy, event.version, None


def _live_replay(
    client: MlflowClient, settings: Settings, predictor: OnnxPredictor, workdir: Path
) -> gate.Gate | None:
    try:
        return replay_gate(client, settings, predictor, workdir)
    except Exception as exc:  # a gate that cannot run does not pass
        detail = f"could not run: {type(exc).__name__}: {exc}"
        return gate.Gate("live_replay", False, 0.0, 0.0, detail)


def _log_to_run(
    client: MlflowClient,
    run_id: str,
    metrics: Metrics,
    gates: list[gate.Gate],
    suite: SuiteResult,
    parity_diff: float,
    ms_per_review: float,
    workdir: Path,
) -> None:
    values = {
        **metrics.as_dict("test"),
        "onnx_parity_max_abs_diff": parity_diff,
        "onnx_latency_ms_per_review": ms_per_review,
        "behaviour_pass_rate": suite.pass_rate,
        "gates_passed": float(all(g.passed for g in gates)),
    }
    for key, value in values.items():
        client.log_metric(run_id, key, value)
    report = workdir / "report"
    report.mkdir(parents=True, exist_ok=True)
    (report / "gates.json").write_text(
        json.dumps([g.__dict__ for g in gates], indent=1, default=str)
    )
    (report / "behaviour.json").write_text(
        json.dumps(
            [
                {"case": o.case.describe(), "passed": o.passed, "score": o.score}
                for o in suite.outcomes
            ],
            indent=1,
        )
    )
    (report / "confusion_test.json").write_text(
        json.dumps({"rows_true_0_1_columns_predicted_0_1": metrics.confusion})
    )
    client.log_artifacts(run_id, str(report), "evaluation")


def log_insights(
    client: MlflowClient,
    run_id: str,
    predictor: OnnxPredictor,
    texts: list[str],
    settings: Settings,
    folder: Path,
) -> Insights:
    """What the version learned, from its own explainer on held-out reviews: under the run's
    ``explanations/``, the ranked words as JSON, their bar chart and the spread of their weights.
    """
    found = insights(
        explainer_for(predictor),
        texts,
        limit=settings.insight_reviews(predictor.bundle.family),
        min_reviews=settings.insight_min_reviews,
        top=settings.insight_top,
    )
    folder.mkdir(parents=True, exist_ok=True)
    summary = found.as_dict()
    (folder / "top_words.json").write_text(json.dumps(summary, indent=1))
    bar_chart(found, folder / "top_words.png")
    distribution_plot(found, folder / "word_weights.png")
    client.log_artifacts(run_id, str(folder), "explanations")
    client.log_metric(run_id, "explain_ms_p50", summary["explain_ms_p50"])
    logger.info(
        "explained %d test reviews (p50 %.1f ms): top positive %s; top negative %s",
        found.reviews,
        summary["explain_ms_p50"],
        [s.word for s in found.positive[:5]],
        [s.word for s in found.negative[:5]],
    )
    return found
