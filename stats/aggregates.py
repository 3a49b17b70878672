"""The pure core: records as rows, and what one transaction adds to the window aggregates.

Nothing here talks to Kafka or PostgreSQL. ``stats.db`` decides *which* records count (only
those a transaction inserts or labels for the first time) and hands them to :class:`Deltas`,
which sums them per model version and window, sorted by key so that every transaction
updates aggregate rows in the same order (no deadlock between concurrent writers).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from contracts import Feedback, Prediction
from contracts.statistics import Granularity, latency_bucket
from stats.windows import window_starts

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One row of ``predictions``, as the processor writes it."""

    request_id: str
    model_name: str
    model_version: str
    label: int
    probability: float
    source: str
    worker_id: str
    submitted_at: datetime
    predicted_at: datetime
    latency_ms: float
    queue_ms: float
    inference_ms: float
    batch_size: int
    user_label: int | None = None

    @classmethod
    def from_message(cls, prediction: Prediction) -> PredictionRow:
        timings = prediction.timings
        return cls(
            request_id=prediction.request_id,
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            label=prediction.label,
            probability=prediction.probability,
            source=prediction.source.value,
            worker_id=prediction.worker_id,
            submitted_at=prediction.submitted_at,
            predicted_at=prediction.predicted_at,
            # What the worker measured: waiting for a batch, then running it.
            latency_ms=timings.queue_ms + timings.inference_ms,
            queue_ms=timings.queue_ms,
            inference_ms=timings.inference_ms,
            batch_size=timings.batch_size,
            user_label=prediction.user_label,
        )


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One row of ``feedback``: a true label for a request_id, or for a bare text."""

    feedback_id: str
    request_id: str | None
    text: str | None
    label: int
    source: str
    given_at: datetime

    @classmethod
    def from_message(cls, feedback: Feedback) -> FeedbackRow:
        return cls(
            feedback_id=feedback.feedback_id,
            request_id=feedback.request_id,
            text=feedback.text,
            label=feedback.label,
            source=feedback.source.value,
            given_at=feedback.given_at,
        )

    @classmethod
    def given_with(cls, prediction: PredictionRow) -> FeedbackRow:
        """The label a sender gave with the request: feedback given when it was sent. Its id
        is derived from the request_id, so it is recorded once however often it arrives."""
        assert prediction.user_label is not None
        return cls(
            feedback_id=f"{prediction.request_id}#label",
            request_id=prediction.request_id,
            text=None,
            label=prediction.user_label,
            source=prediction.source,
            given_at=prediction.submitted_at,
        )


@dataclass(frozen=True, slots=True)
class LabelMatch:
    """A prediction whose true label was just set (``previous_label`` None: counted as labelled
    once) or corrected (only ``correct`` moves, by the difference), in its own windows."""

    model_name: str
    model_version: str
    predicted_at: datetime
    label: int
    true_label: int
    previous_label: int | None = None


WindowKey = tuple[str, str, Granularity, datetime]


@dataclass(slots=True)
class WindowDelta:
    """What to add to one ``window_stats`` row (``latency_ms_max`` is a max, not a sum)."""

    predictions: int = 0
    positives: int = 0
    latency_ms_sum: float = 0.0
    latency_ms_max: float = 0.0
    labelled: int = 0
    correct: int = 0
    with_user_label: int = 0


@dataclass
class Deltas:
    """The aggregate changes of one transaction, per (model, version, granularity, window)."""

    windows: dict[WindowKey, WindowDelta] = field(default_factory=dict)
    latency: dict[tuple[WindowKey, float], int] = field(default_factory=dict)

    def add_prediction(self, row: PredictionRow) -> None:
        latency_ms = row.latency_ms
        le = latency_bucket(latency_ms)
        for key in _window_keys(row.model_name, row.model_version, row.predicted_at):
            delta = self.windows.get(key)
            if delta is None:
                delta = self.windows[key] = WindowDelta()
            delta.predictions += 1
            delta.positives += row.label
            delta.latency_ms_sum += latency_ms
            if latency_ms > delta.latency_ms_max:
                delta.latency_ms_max = latency_ms
            delta.with_user_label += row.user_label is not None
            bucket = (key, le)
            self.latency[bucket] = self.latency.get(bucket, 0) + 1

    def add_label(self, match: LabelMatch) -> None:
        for key in _window_keys(match.model_name, match.model_version, match.predicted_at):
            delta = self.windows.setdefault(key, WindowDelta())
            delta.correct += int(match.label == match.true_label)
            if match.previous_label is None:
                delta.labelled += 1
            else:
                delta.correct -= int(match.label == match.previous_label)

    def window_rows(self) -> list[tuple[WindowKey, WindowDelta]]:
        return sorted(self.windows.items(), key=lambda item: item[0])

    def latency_rows(self) -> list[tuple[WindowKey, float, int]]:
        return [(key, le, count) for (key, le), count in sorted(self.latency.items())]


def _window_keys(model_name: str, model_version: str, at: datetime) -> list[WindowKey]:
    return [(model_name, model_version, g, start) for g, start in window_starts(at)]


@dataclass(frozen=True, slots=True)
class LabelGiven:
    """A true label offered for a request by one feedback record."""

    request_id: str
    label: int
    given_at: datetime
    feedback_id: str


def latest_labels(given: Iterable[LabelGiven]) -> list[LabelGiven]:
    """Per request, the label that wins: the latest ``(given_at, feedback_id)``. So a correction
    replaces an earlier label, and a replay of older feedback never undoes a newer one."""
    latest: dict[str, LabelGiven] = {}
    for item in given:
        kept = latest.get(item.request_id)
        if kept is None or (item.given_at, item.feedback_id) > (kept.given_at, kept.feedback_id):
            latest[item.request_id] = item
    return sorted(latest.values(), key=lambda item: item.request_id)


def first_by(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """Keep the first item for each key, in order: a batch carries each key at most once."""
    seen: set[Hashable] = set()
    kept = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            kept.append(item)
    return kept
