"""Message contracts shared by every reviewstream service: the one shared package."""

from contracts.codec import DecodeError, dead_letter, decode, decode_reply, encode
from contracts.messages import (
    SCHEMA_VERSION,
    ChangeReason,
    DeadLetter,
    ExplainMethod,
    Explanation,
    FailureKind,
    Feedback,
    Label,
    Message,
    ModelChanged,
    Prediction,
    RequestFailed,
    ReviewRequest,
    Source,
    Timings,
    WordWeight,
)
from contracts.topics import KafkaSettings, TopicSpec

__all__ = [
    "SCHEMA_VERSION",
    "ChangeReason",
    "DeadLetter",
    "DecodeError",
    "ExplainMethod",
    "Explanation",
    "FailureKind",
    "Feedback",
    "KafkaSettings",
    "Label",
    "Message",
    "ModelChanged",
    "Prediction",
    "RequestFailed",
    "ReviewRequest",
    "Source",
    "Timings",
    "TopicSpec",
    "WordWeight",
    "dead_letter",
    "decode",
    "decode_reply",
    "encode",
]
