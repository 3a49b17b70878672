"""One ONNX Runtime call per batch, off the event loop; if it fails, each request alone, so one
bad request cannot sink the others (it is refused with the reason, the rest are answered)."""

from __future__ import annotations

import asyncio
import logging

from contracts import FailureKind
from workers.batch import Accepted, Rejected
from workers.metrics import WorkerMetrics
from workers.models import LoadedModel

log = logging.getLogger(__name__)


async def classify(
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
