"""Message contracts shared by every reviewstream service: the one shared package."""

from contracts.codec import DecodeError, dead_letter, decode, encode
from contracts.messages import (
    SCHEMA_VERSION,
    ChangeReason,
    DeadLetter,
    Feedback,
    Label,
    Message,
    ModelChanged,
    Prediction,
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
    "Feedback",
    "KafkaSettings",
    "Label",
    "Message",
    "ModelChanged",
    "Prediction",
    "ReviewRequest",
    "Source",
    "Timings",
    "TopicSpec",
    "dead_letter",
    "decode",
    "encode",
]
