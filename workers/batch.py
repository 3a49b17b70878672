"""The pure core of a worker: records in, requests or rejections out, predictions built.

Nothing here talks to Kafka or ONNX Runtime: :func:`triage` decodes a fetched batch once at the
edge, :func:`predictions` turns one batch of probabilities into replies, and
:func:`collect` gathers a micro-batch from any fetch function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts import (
    DecodeError,
    Explanation,
    FailureKind,
    Prediction,
    RequestFailed,
    RequestFeatures,
    ReviewRequest,
    Timings,
    decode,
)
from runtime.records import Record

Fetch = Callable[[float, int], Awaitable[list["Record"]]]
"""``fetch(timeout_s, max_records)``: records available within the timeout, maybe none."""
Clock = Callable[[], float]


@dataclass(frozen=True)
class Accepted:
    record: Record
    request: ReviewRequest


@dataclass(frozen=True)
class Rejected:
    record: Record
    reason: str
    error_type: str
    request: ReviewRequest | None = None
    """the decoded request, when there is one to answer"""
    kind: FailureKind = FailureKind.INVALID


@dataclass(frozen=True)
class Answer:
    """What the model said about one accepted request."""

    item: Accepted
    probability: float
    features: RequestFeatures | None = None
    explanation: Explanation | None = None


def check(request: ReviewRequest, *, max_text_chars: int) -> str | None:
    """Why a well-formed request still cannot be classified, or None."""
    if not request.text.strip():
        return "text is empty (only whitespace)"
    if len(request.text) > max_text_chars:
        return f"text has {len(request.text)} characters, the limit is {max_text_chars}"
    return None


def triage(
    records: Sequence[Record], *, max_text_chars: int
) -> tuple[list[Accepted], list[Rejected]]:
    """Decode every record; what cannot be classified is rejected with the reason."""
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    for record in records:
        try:
            request = decode(record.value, ReviewRequest)
        except DecodeError as exc:
            rejected.append(Rejected(record, exc.reason, "DecodeError"))
            continue
        problem = check(request, max_text_chars=max_text_chars)
        if problem is None:
            accepted.append(Accepted(record, request))
        else:
            rejected.append(Rejected(record, problem, "InvalidRequest", request))
    return accepted, rejected


def predictions(
    answers: Sequence[Answer],
    *,
    model_name: str,
    model_version: str,
    worker_id: str,
    threshold: float,
    picked_at: datetime,
    inference_ms: float,
) -> list[Prediction]:
    """One Prediction per answered request, naming the model version that produced it."""
    replies = []
    for answer in answers:
        request = answer.item.request
        p = min(1.0, max(0.0, float(answer.probability)))
        queue_ms = (picked_at - request.submitted_at).total_seconds() * 1000
        replies.append(
            Prediction(
                request_id=request.request_id,
                label=1 if p >= threshold else 0,
                probability=p,
                model_name=model_name,
                model_version=model_version,
                worker_id=worker_id,
                submitted_at=request.submitted_at,
                source=request.source,
                reply_to=request.reply_to,
                user_label=request.user_label,
                explanation=answer.explanation,
                features=answer.features,
                timings=Timings(
                    queue_ms=max(0.0, queue_ms),
                    inference_ms=inference_ms,
                    batch_size=len(answers),
                ),
            )
        )
    return replies


def failure(
    rejected: Rejected, *, worker_id: str, model_name: str, model_version: str
) -> RequestFailed | None:
    """The error reply to a refused request that could be decoded, so that its sender hears at
    once instead of timing out; an undecodable record has no one to answer (None)."""
    r = rejected.request
    if r is None:
        return None
    return RequestFailed(
        request_id=r.request_id,
        error=rejected.kind,
        reason=rejected.reason[:2000],
        worker_id=worker_id,
        model_name=model_name,
        model_version=model_version,
        submitted_at=r.submitted_at,
        source=r.source,
        reply_to=r.reply_to,
    )


def next_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    """The offsets to commit for a processed batch: last offset + 1 per partition."""
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return offsets


async def collect(
    fetch: Fetch, *, max_size: int, max_wait_s: float, idle_timeout_s: float, clock: Clock
) -> list[Record]:
    """A micro-batch: wait up to ``idle_timeout_s`` for a first record, then take what arrives
    within ``max_wait_s`` of it, up to ``max_size`` records."""
    batch = await fetch(idle_timeout_s, max_size)
    if not batch:
        return batch
    deadline = clock() + max_wait_s
    while len(batch) < max_size:
        left = deadline - clock()
        if left <= 0:
            break
        more = await fetch(left, max_size - len(batch))
        if not more:
            break
        batch.extend(more)
    return batch
