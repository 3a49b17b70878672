"""One ONNX Runtime call per batch, off the event loop; if it fails, each request alone, so one
bad request cannot sink the others (it is refused with the reason, the rest are answered).
Requests that ask ``explain`` are then explained one by one (a few more ONNX calls each).

A batch of at most ``inline_max`` requests is classified on the event loop instead: handing it
to a thread and back costs more (0.1-0.3 ms on two cores) than the fast model takes for a few
reviews, and the worker's loop awaits the batch either way; only its background tasks
(heartbeats, acknowledgements, health probes) wait the model's time, well under a millisecond
(the accurate family's encoder takes ~10 ms a review: there, 0 keeps it in the thread)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from contracts import FailureKind, RequestFeatures
from workers.batch import Accepted, Answer, Rejected
from workers.metrics import WorkerMetrics
from workers.models import LoadedModel

log = logging.getLogger(__name__)


async def classify(
    model: LoadedModel,
    accepted: list[Accepted],
    metrics: WorkerMetrics,
    *,
    explain: bool = True,
    inline_max: int = 0,
) -> tuple[list[Answer], list[Rejected]]:
    """The requests answered (probability, features, explanation if asked and ``explain``)
    and those refused."""
    answers, failed = await _predict(model, accepted, metrics, inline=len(accepted) <= inline_max)
    if not explain or not any(a.item.request.explain for a in answers):
        return answers, failed
    explained: list[Answer] = []
    for answer in answers:
        try:
            explained.append(await _explain(model, answer))
        except Exception as exc:
            metrics.errors.labels(kind="explain").inc()
            item = answer.item
            log.exception("explaining request %s failed", item.request.request_id)
            reason = f"explaining failed: {type(exc).__name__}: {exc}"
            failed.append(
                Rejected(item.record, reason, "InferenceError", item.request, FailureKind.INFERENCE)
            )
    return explained, failed


async def _explain(model: LoadedModel, answer: Answer) -> Answer:
    if not answer.item.request.explain:
        return answer
    if model.explainer is None:
        raise LookupError(f"version {model.version} has no explainer")
    explanation = await asyncio.to_thread(model.explainer.explain, answer.item.request.text)
    return replace(answer, explanation=explanation)


async def _predict(
    model: LoadedModel, accepted: list[Accepted], metrics: WorkerMetrics, *, inline: bool
) -> tuple[list[Answer], list[Rejected]]:
    async def predict(texts: list[str]) -> tuple[NDArray[np.float32], list[RequestFeatures]]:
        if inline:
            return model.predictor.predict_described(texts)
        return await asyncio.to_thread(model.predictor.predict_described, texts)

    texts = [a.request.text for a in accepted]
    try:
        result, features = await predict(texts)
        return [Answer(item, float(p), f) for item, p, f in zip(accepted, result, features,
                                                                strict=True)], []  # fmt: skip
    except Exception:
        metrics.errors.labels(kind="inference").inc()
        log.exception("batch inference failed; retrying its %d requests one by one", len(texts))
    answers: list[Answer] = []
    failed: list[Rejected] = []
    for item in accepted:
        try:
            (p,), (f,) = await predict([item.request.text])
        except Exception as exc:
            reason = f"inference failed: {type(exc).__name__}: {exc}"
            failed.append(
                Rejected(item.record, reason, "InferenceError", item.request, FailureKind.INFERENCE)
            )
        else:
            answers.append(Answer(item, float(p), f))
    return answers, failed
