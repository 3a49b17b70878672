"""The JSON bodies of the API and the WebSocket, as pydantic models.

Input models are strict (no coercion: ``"1"`` is not a label) and forbid unknown fields.
Size limits are settings, passed in the validation context as :class:`Limits`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts import (
    Alert,
    AlertStatus,
    ExplainMethod,
    Explanation,
    ModelChanged,
    Prediction,
    WorkerStatus,
)
from gateway.deployment import Deployment
from gateway.readmodel import (
    DriftPoint,
    LabelSplit,
    Overview,
    RecentPrediction,
    ShadowComparison,
    TrafficPoint,
    VersionStats,
    WindowPoint,
)
from runtime.fleet import FleetView, acknowledged, is_live, seconds_since


def _not_bool(value: object) -> object:
    if isinstance(value, bool):  # JSON true/false would otherwise pass as 1/0
        raise ValueError("a label is the number 0 (negative) or 1 (positive), not a boolean")
    return value


LabelIn = Annotated[Literal[0, 1], BeforeValidator(_not_bool)]
Verdict = Literal["negative", "positive"]


@dataclass(frozen=True)
class Limits:
    max_text_chars: int
    max_batch: int


def check_text(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("text is empty")
    limits = info.context.get("limits") if isinstance(info.context, dict) else None
    if isinstance(limits, Limits) and len(value) > limits.max_text_chars:
        raise ValueError(f"text has {len(value)} characters; the limit is {limits.max_text_chars}")
    return value


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- requests -------------------------------------------------------------------------------


class ReviewIn(In):
    """One review to classify."""

    text: str = Field(description="the review, 1 to RS_GATEWAY_MAX_TEXT_CHARS characters")
    label: LabelIn | None = Field(
        None, description="the true label if the sender knows it (0 negative, 1 positive)"
    )

    _text = field_validator("text")(check_text)


class ExplainIn(In):
    """One review whose answer should say which words decided it."""

    text: str = Field(description="the review, 1 to RS_GATEWAY_MAX_TEXT_CHARS characters")

    _text = field_validator("text")(check_text)


class BatchIn(In):
    """Several reviews classified together (at most RS_GATEWAY_MAX_BATCH)."""

    reviews: list[ReviewIn] = Field(min_length=1)

    @field_validator("reviews")
    @classmethod
    def _bounded(cls, value: list[ReviewIn], info: ValidationInfo) -> list[ReviewIn]:
        limits = info.context.get("limits") if isinstance(info.context, dict) else None
        if isinstance(limits, Limits) and len(value) > limits.max_batch:
            raise ValueError(f"{len(value)} reviews; the limit is {limits.max_batch}")
        return value


class FeedbackIn(In):
    """The true label for an earlier request_id, or for a text."""

    request_id: str | None = Field(None, min_length=1, max_length=128)
    text: str | None = None
    label: LabelIn = Field(description="0 negative, 1 positive")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_text(value, info)

    @model_validator(mode="after")
    def _answers_something(self) -> FeedbackIn:
        if self.request_id is None and self.text is None:
            raise ValueError("give a request_id or a text")
        return self


class WindowsQuery(In):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)  # query strings

    granularity: Literal["minute", "hour"] = "minute"
    limit: int = Field(60, ge=1, le=1440, description="how many windows back from now")
    model_version: str | None = Field(None, min_length=1, max_length=64)


class DriftQuery(In):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    minutes: int = Field(60, ge=1, le=7 * 24 * 60, description="how far back from now")
    model_version: str | None = Field(None, min_length=1, max_length=64)


class ShadowQuery(In):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    model_version: str | None = Field(
        None, min_length=1, max_length=64, description="one challenger version; default: all"
    )


class EmptyQuery(In):
    """No query parameters: any one given is reported as unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class RecentQuery(In):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    limit: int = Field(20, ge=1, le=200)


# --- responses ------------------------------------------------------------------------------


class PredictionOut(Out):
    request_id: str
    label: LabelIn
    verdict: Verdict
    probability: float = Field(description="probability of the positive class")
    confidence: float = Field(description="probability of the verdict given")
    model_name: str
    model_version: str
    worker_id: str

    @classmethod
    def of(cls, p: Prediction) -> PredictionOut:
        return cls(
            request_id=p.request_id,
            label=p.label,
            verdict="positive" if p.label == 1 else "negative",
            probability=p.probability,
            confidence=p.probability if p.label == 1 else 1.0 - p.probability,
            model_name=p.model_name,
            model_version=p.model_version,
            worker_id=p.worker_id,
        )


class WordWeightOut(Out):
    word: str = Field(description="the word as written in the review")
    start: int = Field(description="its character offset in the review")
    end: int = Field(description="the offset just after it")
    weight: float = Field(description="push towards positive (> 0) or negative (< 0), in logits")


class ExplanationOut(Out):
    method: ExplainMethod = Field(
        description="ngram_sum: exact, base + the weights = logit (fast model); occlusion: the "
        "logit lost when the word is masked out (accurate model)"
    )
    base: float = Field(description="the logit of a review with no words")
    logit: float = Field(description="the logit of this review; probability = sigmoid(logit)")
    words: list[WordWeightOut] = Field(description="every word the model read, in order")

    @classmethod
    def of(cls, e: Explanation) -> ExplanationOut:
        return cls.model_validate(e.model_dump())


class ExplainedOut(PredictionOut):
    explanation: ExplanationOut

    @classmethod
    def explained(cls, p: Prediction, e: Explanation) -> ExplainedOut:
        return cls(**dict(PredictionOut.of(p)), explanation=ExplanationOut.of(e))


class BatchOut(Out):
    results: list[PredictionOut]


class FeedbackOut(Out):
    feedback_id: str
    request_id: str | None
    label: LabelIn
    status: Literal["accepted"] = "accepted"


class ErrorOut(Out):
    error: str = Field(description="a stable code, e.g. invalid_body or reply_timeout")
    message: str = Field(description="what is wrong, for a human")
    details: list[dict[str, str]] | None = Field(None, description="one entry per bad field")
    retry_after_s: int | None = None


class HealthOut(Out):
    """Every service's /healthz body (runtime.health)."""

    service: str
    status: Literal["alive"] = "alive"


class ReadyOut(Out):
    """Every service's /readyz body (runtime.health)."""

    service: str
    ready: bool
    checks: dict[str, bool] = Field(
        description="kafka and database reachable, no background task died"
    )
    reason: str | None = Field(None, description="what is missing, when not ready")
    degraded: list[str] | None = Field(
        None, description="optional checks that fail; served without them (the statistics)"
    )


class ModelOut(Out):
    """The model the registry watcher last announced on the models topic (gateway.deployment)."""

    state: Literal["unknown", "none", "deployed"] = Field(
        description="none: classifications answer 503 no_model at once; unknown: the models "
        "topic is not read yet (reviews go through)"
    )
    model_name: str | None = None
    version: str | None = None

    @classmethod
    def of(cls, deployment: Deployment) -> ModelOut:
        return cls(
            state=deployment.state.value,
            model_name=deployment.model_name,
            version=deployment.version,
        )


class SessionOut(Out):
    """Who the key belongs to and what the UI needs to know."""

    name: str
    role: Literal["viewer", "client", "admin"]
    open_mode: bool
    instance_id: str
    max_text_chars: int
    reply_timeout_s: float


class AdminStatusOut(Out):
    instance_id: str
    open_mode: bool
    kafka_connected: bool
    in_flight: int
    max_in_flight: int
    websockets: int
    reply_timeout_s: float
    api_keys: int
    model: ModelOut


# --- the fleet (what every worker serves, from the fleet topic) ------------------------------


class FleetWorkerOut(Out):
    """One worker's latest report on the fleet topic (``contracts.WorkerStatus``)."""

    worker_id: str
    model_name: str
    alias: str
    role: Literal["serving", "shadow"]
    state: Literal["starting", "serving", "loading", "failed", "stopped"]
    version: str | None = Field(description="the version in service")
    wanted_version: str | None = Field(description="the version the alias names, as heard")
    load_attempts: int = Field(description="failed loads of wanted_version so far")
    error: str | None = Field(description="why the last load failed")
    lag: int | None = Field(description="requests not yet consumed by this worker")
    reported_at: datetime
    seconds_since_report: float
    live: bool = Field(description="reported within 3 heartbeats and not stopped")

    @classmethod
    def of(cls, status: WorkerStatus, now: datetime) -> FleetWorkerOut:
        return cls(
            **status.model_dump(
                include={
                    "worker_id", "model_name", "alias", "role", "state", "version",
                    "wanted_version", "load_attempts", "error", "lag", "reported_at",
                }
            ),
            seconds_since_report=round(seconds_since(status, now), 3),
            live=is_live(status, now),
        )  # fmt: skip


class FleetModelOut(Out):
    """Per model and alias: the version the models topic names, and who serves it."""

    model_name: str
    alias: str
    version: str | None = Field(description="named by the models topic; null if none")
    acknowledged: bool = Field(
        description="every live worker serves it (false with no live worker)"
    )
    pending: list[str] = Field(description="live workers that do not serve it yet")
    live_workers: int


class FleetOut(Out):
    workers: list[FleetWorkerOut] = Field(description="every worker that reported, by id")
    models: list[FleetModelOut]

    @classmethod
    def of(cls, view: FleetView, announced: Mapping[str, ModelChanged], now: datetime) -> FleetOut:
        pairs = {(e.model_name, e.alias) for e in announced.values()}
        pairs |= {(s.model_name, s.alias) for s in view.workers.values()}
        models = []
        for name, alias in sorted(pairs):
            event = announced.get(name)
            version = event.version if event is not None and event.alias == alias else None
            done, pending = (
                acknowledged(view, name, alias, version, now=now)
                if version is not None
                else (False, [])
            )
            live = [s for s in view.live(now) if s.model_name == name and s.alias == alias]
            models.append(
                FleetModelOut(
                    model_name=name,
                    alias=alias,
                    version=version,
                    acknowledged=done,
                    pending=pending,
                    live_workers=len(live),
                )
            )
        workers = [FleetWorkerOut.of(view.workers[w], now) for w in sorted(view.workers)]
        return cls(workers=workers, models=models)


# --- alerts (Alertmanager's webhook in, the recent alerts out) ------------------------------


class WebhookAlertIn(BaseModel):
    """One alert of Alertmanager's webhook body. Fields Alertmanager may add later are
    ignored (not refused): a newer Alertmanager must not have its notifications bounced."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str = Field("", alias="generatorURL", max_length=4096)
    fingerprint: str = Field(min_length=1, max_length=128)

    @field_validator("labels")
    @classmethod
    def _named(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("an alert needs the label alertname")
        return labels

    def alert(self) -> Alert:
        return Alert(
            name=self.labels["alertname"],
            status=AlertStatus(self.status),
            severity=self.labels.get("severity", "none"),
            labels=self.labels,
            summary=self.annotations.get("summary", ""),
            description=self.annotations.get("description", ""),
            starts_at=self.starts_at,
            # A firing alert's endsAt is Alertmanager's guess (or year 1): only a resolved
            # alert has really ended.
            ends_at=self.ends_at if self.status == "resolved" else None,
            fingerprint=self.fingerprint,
            generator_url=self.generator_url,
        )


class AlertmanagerWebhookIn(BaseModel):
    """Alertmanager's webhook body, version 4 (https://prometheus.io/docs/alerting/latest/
    configuration/#webhook_config); one notification of one group of alerts."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_key: str = Field("", alias="groupKey")
    alerts: list[WebhookAlertIn] = Field(min_length=1, max_length=1000)


class AlertsPublishedOut(Out):
    published: int = Field(description="alerts published on the alerts topic")


class AlertOut(Out):
    name: str
    status: Literal["firing", "resolved"]
    severity: str
    labels: dict[str, str]
    summary: str
    description: str
    starts_at: datetime
    ends_at: datetime | None
    fingerprint: str
    generator_url: str
    received_at: datetime

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls.model_validate(alert.model_dump(exclude={"schema_version"}))


class AlertListOut(Out):
    alerts: list[AlertOut] = Field(description="newest change first; one entry per alert")


# --- statistics -----------------------------------------------------------------------------


class SummaryOut(Out):
    """Since the first request: every model version together, then each one (``gateway.readmodel``
    totals and overview)."""

    predictions: int
    positives: int
    negatives: int
    positive_share: float | None
    labelled: int
    correct: int
    accuracy: float | None = Field(
        description="agreement with the users: correct / labelled; null with no feedback yet"
    )
    with_label: int = Field(description="predictions whose request came with the sender's label")
    with_label_share: float | None
    feedback: int = Field(description="feedback records received (matched or not)")
    feedback_waiting: int = Field(description="feedback whose prediction has not arrived (yet)")
    models: list[VersionStats] = Field(description="per model version, newest first")

    @classmethod
    def of(cls, overview: Overview, split: LabelSplit, models: list[VersionStats]) -> SummaryOut:
        return cls(
            predictions=overview.predictions,
            positives=split.positive,
            negatives=split.negative,
            positive_share=overview.positive_share,
            labelled=overview.labelled,
            correct=overview.correct,
            accuracy=overview.accuracy,
            with_label=overview.with_label,
            with_label_share=overview.with_label_share,
            feedback=overview.feedback_received,
            feedback_waiting=overview.feedback_waiting,
            models=models,
        )


class WindowsOut(Out):
    granularity: Literal["minute", "hour"]
    windows: list[WindowPoint] = Field(description="per model version and window, oldest first")


class DriftStateOut(Out):
    model_version: str
    alarm: bool = Field(description="any feature's latest check alarms")
    latest: list[DriftPoint] = Field(description="each feature's latest check")


class DriftOut(Out):
    versions: list[DriftStateOut] = Field(description="each version checked in the period")
    checks: list[DriftPoint] = Field(description="every check in the period, oldest first")

    @classmethod
    def of(cls, checks: list[DriftPoint]) -> DriftOut:
        latest: dict[str, dict[str, DriftPoint]] = {}
        for check in checks:  # oldest first: the last one seen is the latest
            latest.setdefault(check.model_version, {})[check.feature] = check
        versions = [
            DriftStateOut(model_version=version, alarm=any(p.alarm for p in points.values()),
                          latest=sorted(points.values(), key=lambda p: p.feature))
            for version, points in sorted(latest.items())
        ]  # fmt: skip
        return cls(versions=versions, checks=checks)


class ShadowOut(Out):
    """Every challenger version seen in shadow, side by side with the production version that
    answered the same reviews (a challenger that shadowed two production versions has two)."""

    comparisons: list[ShadowComparison] = Field(description="latest challenger first")


class RecentOut(Out):
    request_id: str
    label: LabelIn
    verdict: Verdict
    probability: float
    model_name: str
    model_version: str
    source: str
    predicted_at: datetime
    latency_ms: float
    true_label: LabelIn | None

    @classmethod
    def of(cls, p: RecentPrediction) -> RecentOut:
        return cls(
            request_id=p.request_id,
            label=1 if p.label == 1 else 0,
            verdict="positive" if p.label == 1 else "negative",
            probability=p.probability,
            model_name=p.model_name,
            model_version=p.model_version,
            source=p.source,
            predicted_at=p.predicted_at,
            latency_ms=p.latency_ms,
            true_label=None if p.true_label is None else (1 if p.true_label == 1 else 0),
        )


class RecentListOut(Out):
    predictions: list[RecentOut]


SeriesPoint = TrafficPoint
"""One minute of traffic, all model versions together: the live chart."""


class LiveStats(Out):
    available: bool
    message: str | None = None
    summary: SummaryOut | None = None
    series: list[SeriesPoint] = Field(default_factory=list)
    updated_at: datetime


# --- WebSocket messages from the browser ----------------------------------------------------


class WsClassify(In):
    type: Literal["classify"]
    id: str = Field(min_length=1, max_length=64, description="the client's own message id")
    text: str
    label: LabelIn | None = None
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[!-~]+$",
        description="a retry with the same key gets the same answer and is counted once",
    )

    _text = field_validator("text")(check_text)


class WsExplain(In):
    type: Literal["explain"]
    id: str = Field(min_length=1, max_length=64, description="the client's own message id")
    text: str

    _text = field_validator("text")(check_text)


class WsFeedback(In):
    type: Literal["feedback"]
    id: str = Field(min_length=1, max_length=64)
    request_id: str = Field(min_length=1, max_length=128)
    label: LabelIn


class WsPing(In):
    type: Literal["ping"]
    id: str | None = Field(None, max_length=64)


WsIncoming = Annotated[WsClassify | WsExplain | WsFeedback | WsPing, Field(discriminator="type")]


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
