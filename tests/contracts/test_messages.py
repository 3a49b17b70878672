from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts import (
    Alert,
    AlertStatus,
    ChangeReason,
    DecodeError,
    ExplainMethod,
    Explanation,
    FailureKind,
    Feedback,
    Message,
    ModelChanged,
    Prediction,
    RequestFailed,
    ReviewRequest,
    Source,
    Timings,
    WordWeight,
    dead_letter,
    decode,
    decode_reply,
    encode,
)
from contracts.codec import supported_versions

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

EXAMPLES: list[Message] = [
    ReviewRequest(text="Great tacos, rude waiter.", source=Source.REST, submitted_at=NOW),
    ReviewRequest(
        request_id="r-1", text="ok", source=Source.REPLAY, user_label=1, reply_to="gateway-a"
    ),
    Prediction(
        request_id="r-1",
        label=1,
        probability=0.93,
        model_name="reviewstream-sentiment",
        model_version="3",
        worker_id="worker-1",
        submitted_at=NOW,
        source=Source.REST,
        timings=Timings(queue_ms=1.5, inference_ms=3.0, batch_size=8),
    ),
    ReviewRequest(text="Why?", source=Source.WS, explain=True),
    Prediction(
        request_id="r-2",
        label=0,
        probability=0.1,
        model_name="reviewstream-sentiment",
        model_version="3",
        worker_id="worker-1",
        submitted_at=NOW,
        source=Source.WS,
        timings=Timings(queue_ms=1.5, inference_ms=3.0, batch_size=1),
        explanation=Explanation(
            method=ExplainMethod.NGRAM_SUM,
            base=0.5,
            logit=-2.0,
            words=[WordWeight(word="Cold", start=0, end=4, weight=-2.5)],
        ),
    ),
    Feedback(request_id="r-1", label=0, source=Source.WS),
    Feedback(text="Never again.", label=0, source=Source.REPLAY),
    ModelChanged(
        model_name="reviewstream-sentiment",
        version="4",
        alias="production",
        artifact_uri="models:/reviewstream-sentiment/4",
        sha256="a" * 64,
        reason=ChangeReason.ROLLED_BACK,
    ),
    Alert(
        name="ServiceDown",
        status=AlertStatus.FIRING,
        severity="critical",
        labels={"alertname": "ServiceDown", "job": "workers", "instance": "w:9101"},
        summary="workers at w:9101 is down",
        starts_at=NOW,
        fingerprint="a1b2c3d4e5f60718",
    ),
    RequestFailed(
        request_id="r-1",
        error=FailureKind.INFERENCE,
        reason="inference failed: RuntimeError: boom",
        worker_id="worker-1",
        model_name="reviewstream-sentiment",
        model_version="3",
        submitted_at=NOW,
        source=Source.REST,
    ),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_is_exact(message: Message) -> None:
    raw = encode(message)
    assert json.loads(raw)["schema_version"] == max(supported_versions(type(message)))
    assert decode(raw, type(message)) == message


PREDICTION_V1 = {
    "schema_version": 1,
    "request_id": "r-1",
    "label": 0,
    "probability": 0.2,
    "model_name": "reviewstream-sentiment",
    "model_version": "3",
    "worker_id": "w",
    "submitted_at": "2026-11-26T12:00:00Z",
    "source": "rest",
    "timings": {"queue_ms": 1.0, "inference_ms": 1.0, "batch_size": 1},
}
FAILED = RequestFailed(
    request_id="r-2",
    error=FailureKind.INVALID,
    reason="text has 30 characters, the limit is 10",
    worker_id="w",
    submitted_at=NOW,
    source=Source.WS,
    reply_to="gateway-a",
)


def test_a_version_1_prediction_is_still_accepted() -> None:
    """Side by side during a rollout: a worker not upgraded yet writes version 1."""
    old = decode(json.dumps(PREDICTION_V1).encode(), Prediction)
    assert old.schema_version == 1
    assert old.user_label is None
    new = Prediction(**{**PREDICTION_V1, "schema_version": 2, "user_label": 1})
    assert decode(encode(new), Prediction).user_label == 1
    assert json.loads(encode(new))["schema_version"] == 2


def test_a_version_1_request_is_still_accepted_and_asks_for_no_explanation() -> None:
    old = {"schema_version": 1, "text": "ok", "source": "producer"}
    request = decode(json.dumps(old).encode(), ReviewRequest)
    assert (request.schema_version, request.explain) == (1, False)
    assert json.loads(encode(ReviewRequest(text="ok", source=Source.REST)))["schema_version"] == 2


def test_the_predictions_topic_carries_predictions_and_error_replies() -> None:
    assert decode_reply(json.dumps(PREDICTION_V1).encode()).request_id == "r-1"
    assert decode_reply(encode(FAILED)) == FAILED
    named_error = {**PREDICTION_V1, "worker_id": "error", "schema_version": 2}
    assert isinstance(decode_reply(json.dumps(named_error).encode()), Prediction)


def test_a_broken_error_reply_says_what_is_wrong_with_it() -> None:
    broken = {**json.loads(encode(FAILED)), "error": "meltdown"}
    with pytest.raises(DecodeError, match="invalid RequestFailed: error"):
        decode_reply(json.dumps(broken).encode())
    with pytest.raises(DecodeError, match="unsupported schema_version 1 for RequestFailed"):
        decode_reply(json.dumps({**broken, "schema_version": 1}).encode())
    with pytest.raises(DecodeError, match="unsupported schema_version 4 for Prediction"):
        decode_reply(json.dumps({**PREDICTION_V1, "schema_version": 4}).encode())


def test_messages_are_frozen() -> None:
    request = ReviewRequest(text="x", source=Source.REST)
    with pytest.raises(ValidationError):
        request.text = "y"  # type: ignore[misc]


def test_request_ids_are_unique_by_default() -> None:
    first = ReviewRequest(text="a", source=Source.REST)
    second = ReviewRequest(text="a", source=Source.REST)
    assert first.request_id != second.request_id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "tombstone"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"text": "hi", "source": "rest"}', "unsupported schema_version None"),
        (b'{"schema_version": 3, "text": "hi", "source": "rest"}', "unsupported schema_version 3"),
        (b'{"schema_version": 1, "text": "", "source": "rest"}', "text"),
        (b'{"schema_version": 1, "text": "hi", "source": "fax"}', "source"),
        (b'{"schema_version": 1, "text": "hi", "source": "rest", "extra": 1}', "extra"),
        (b'{"schema_version": 1, "text": "hi", "source": "rest", "user_label": 5}', "user_label"),
    ],
)
def test_decode_says_what_is_wrong(raw: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw, ReviewRequest)
    assert reason in info.value.reason


def test_feedback_needs_a_request_id_or_a_text() -> None:
    with pytest.raises(ValidationError, match="request_id or a text"):
        Feedback(label=1, source=Source.REST)


def test_model_changed_checks_the_digest() -> None:
    with pytest.raises(ValidationError):
        ModelChanged(model_name="m", version="1", alias="p", artifact_uri="x", sha256="nothex")


def test_dead_letter_keeps_the_original_bytes() -> None:
    letter = dead_letter(
        topic="reviews.requests",
        partition=2,
        offset=41,
        key=b"k",
        value=b"\xff\x00raw",
        reason="value is not UTF-8",
        error_type="DecodeError",
        service="worker",
    )
    assert base64.b64decode(letter.value) == b"\xff\x00raw"
    assert base64.b64decode(letter.key or "") == b"k"
    assert decode(encode(letter), type(letter)) == letter
