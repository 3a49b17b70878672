"""Message contracts shared by every reviewstream service: the one shared package."""

from contracts.codec import DecodeError, dead_letter, decode, decode_reply, encode
from contracts.messages import (
    SCHEMA_VERSION,
    ChangeReason,
    DeadLetter,
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
)
from contracts.topics import KafkaSettings, TopicSpec

__all__ = [
    "SCHEMA_VERSION",
    "ChangeReason",
    "DeadLetter",
    "DecodeError",
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
    "dead_letter",
    "decode",
    "decode_reply",
    "encode",
]
