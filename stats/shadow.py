"""A challenger's shadow predictions as rows: stored beside production's, compared at read time.

The processor stores each shadow prediction once per (request_id, model_version) and keeps no
aggregate of them: agreement and live accuracy are a join with ``predictions`` by request_id
(the read model's, in the gateway), so a label that arrives or changes later is always counted
with the latest feedback, and a replay or retry changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts import Prediction, decode_reply


@dataclass(frozen=True, slots=True)
class ShadowRow:
    """One row of ``shadow_predictions``."""

    request_id: str
    model_name: str
    model_version: str
    label: int
    probability: float
    worker_id: str
    predicted_at: datetime

    @classmethod
    def from_message(cls, prediction: Prediction) -> ShadowRow:
        return cls(
            request_id=prediction.request_id,
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            label=prediction.label,
            probability=prediction.probability,
            worker_id=prediction.worker_id,
            predicted_at=prediction.predicted_at,
        )


def shadow_row(raw: bytes | None) -> tuple[ShadowRow, Prediction] | None:
    """A shadow prediction to store, and the message it came from; a shadow worker's error
    reply has nothing to compare. Raises DecodeError for a record that is neither (it goes
    to the topic's DLQ)."""
    reply = decode_reply(raw)
    return (ShadowRow.from_message(reply), reply) if isinstance(reply, Prediction) else None
