"""One ONNX Runtime call per batch, off the event loop; if it fails, each request alone, so one
bad request cannot sink the others (it is refused with the reason, the rest are answered).
Requests that ask ``explain`` are then explained one by one (a few more ONNX calls each)."""

from __future__ import annotations

import asyncio
import logging

from contracts import Explanation, FailureKind
from workers.batch import Accepted, Rejected
from workers.metrics import WorkerMetrics
from workers.models import LoadedModel

log = logging.getLogger(__name__)


async def classify(
    model: LoadedModel, accepted: list[Accepted], metrics: WorkerMetrics
) -> tuple[list[Accepted], list[float], list[Explanation | None], list[Rejected]]:
    """The requests answered, their probabilities and explanations, and those refused."""
    ok, probabilities, failed = await _predict(model, accepted, metrics)
    if not any(item.request.explain for item in ok):
        return ok, probabilities, [None] * len(ok), failed
    explained: list[Accepted] = []
    kept: list[float] = []
    explanations: list[Explanation | None] = []
    for item, probability in zip(ok, probabilities, strict=True):
        try:
            explanation = await _explain(model, item)
        except Exception as exc:
            metrics.errors.labels(kind="explain").inc()
            log.exception("explaining request %s failed", item.request.request_id)
            reason = f"explaining failed: {type(exc).__name__}: {exc}"
            failed.append(
                Rejected(item.record, reason, "InferenceError", item.request, FailureKind.INFERENCE)
            )
            continue
        explained.append(item)
        kept.append(probability)
        explanations.append(explanation)
    return explained, kept, explanations, failed


async def _explain(model: LoadedModel, item: Accepted) -> Explanation | None:
    if not item.request.explain:
        return None
    if model.explainer is None:
        raise LookupError(f"version {model.version} has no explainer")
    return await asyncio.to_thread(model.explainer.explain, item.request.text)


async def _predict(
    model: LoadedModel, accepted: list[Accepted], metrics: WorkerMetrics
) -> tuple[list[Accepted], list[float], list[Rejected]]:
    texts = [a.request.text for a in accepted]
    try:
        result = await asyncio.to_thread(model.predictor.predict, texts)
        return accepted, [float(p) for p in result], []
    except Exception:
        metrics.errors.labels(kind="inference").inc()
        log.exception("batch inference failed; retrying its %d requests one by one", len(texts))
    ok: list[Accepted] = []
    probabilities: list[float] = []
    failed: list[Rejected] = []
    for item in accepted:
        try:
            (p,) = await asyncio.to_thread(model.predictor.predict, [item.request.text])
        except Exception as exc:
            reason = f"inference failed: {type(exc).__name__}: {exc}"
            failed.append(
                Rejected(item.record, reason, "InferenceError", item.request, FailureKind.INFERENCE)
            )
        else:
            ok.append(item)
            probabilities.append(float(p))
    return ok, probabilities, failed
