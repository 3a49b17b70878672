"""The messages that travel between services, as JSON on Kafka.

Every message is a frozen pydantic model with a ``schema_version``. A new field or message
bumps the version of what it changes; consumers accept the old and the new side by side during
a rollout (so upgrade consumers before producers), and no Python import path is ever put on
the wire. Unknown fields are rejected so that a producer's typo fails loudly at the edge.

Versions in use:

- 1: every message as first released.
- 2: the predictions topic. :class:`Prediction` carries the ``user_label`` of its request, and
  :class:`RequestFailed` answers a request that a worker could not classify.
- 2 of :class:`ReviewRequest`, 3 of :class:`Prediction`: a request may ask ``explain``, and its
  prediction then carries an :class:`Explanation` (a weight per word); every prediction
  carries the review's :class:`RequestFeatures` for the drift monitor.
- 2 of :class:`ModelChanged`: the version's :class:`ReferenceProfile`.
- 1 of :class:`Alert`: the alerts topic, new (Alertmanager's alerts, through the gateway).
- 1 of :class:`WorkerStatus`: the fleet topic, new (what each worker serves, as a heartbeat).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

SCHEMA_VERSION: Literal[1] = 1

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# A label is 0 (negative) or 1 (positive), as in the training data.
Label = Literal[0, 1]


def new_request_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Each message declares the versions it accepts as ``schema_version: Literal[...]``, and
    writes the newest."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    schema_version: int


class Source(StrEnum):
    REST = "rest"
    WS = "ws"
    PRODUCER = "producer"
    REPLAY = "replay"


class ReviewRequest(Message):
    """A review to classify. Keyed by ``request_id`` on the requests topic."""

    schema_version: Literal[1, 2] = 2

    request_id: RequestId = Field(default_factory=new_request_id)
    # Length limits are a worker setting (oversized text goes to the DLQ with the reason);
    # the contract only refuses what can never be classified.
    text: Annotated[str, StringConstraints(min_length=1)]
    submitted_at: datetime = Field(default_factory=utc_now)
    source: Source
    # A label the sender already knows (a replay, or a user who picked it before sending).
    user_label: Label | None = None
    # Opaque routing hint for the reply, e.g. the gateway instance waiting for it.
    reply_to: str | None = Field(default=None, max_length=256)
    # Version 2: answer with an Explanation. An explained request is a question about a review,
    # not traffic: the statistics do not count it.
    explain: bool = False


class Timings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_ms: float = Field(ge=0, description="submitted_at to the worker picking the batch up")
    inference_ms: float = Field(
        ge=0, description="preprocessing + ONNX Runtime for the whole batch"
    )
    batch_size: int = Field(ge=1)


class ExplainMethod(StrEnum):
    NGRAM_SUM = "ngram_sum"
    """exact: the logit is ``base`` plus the sum of the weights (the fast model)"""
    OCCLUSION = "occlusion"
    """a word's weight is how much the logit falls when the word is masked out"""


class WordWeight(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    word: str = Field(min_length=1, max_length=256)
    start: int = Field(ge=0, description="character offset of the word in the review text")
    end: int = Field(ge=0, description="character offset just after the word")
    weight: float = Field(description="push towards positive (> 0) or negative (< 0), in logits")


class Explanation(BaseModel):
    """Which words decided an answer, in the review's order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: ExplainMethod
    base: float = Field(description="the logit of a review with no words")
    logit: float = Field(description="the logit of this review")
    words: list[WordWeight]


class RequestFeatures(BaseModel):
    """What the drift monitor needs of a review, computed by the worker (never the text)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    words: int = Field(ge=0, description="tokens in the review")
    unknown_share: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="share of its n-grams or word pieces never seen in training; None when "
        "the version has no reference profile (unmonitored)",
    )


class Prediction(Message):
    """The answer to one ReviewRequest. Keyed by ``request_id`` on the predictions topic."""

    schema_version: Literal[1, 2, 3] = 3
    request_id: RequestId
    label: Label
    probability: float = Field(ge=0.0, le=1.0, description="probability of the positive class")
    model_name: ModelName
    model_version: str = Field(min_length=1, max_length=64)
    worker_id: str = Field(min_length=1, max_length=256)
    submitted_at: datetime
    predicted_at: datetime = Field(default_factory=utc_now)
    source: Source
    timings: Timings
    reply_to: str | None = Field(default=None, max_length=256)
    # Version 2: the label the sender gave with the request, so that it counts as feedback.
    user_label: Label | None = None
    # Version 3: the answer to a request that asked ``explain``, and the review's features
    # for the drift monitor.
    explanation: Explanation | None = None
    features: RequestFeatures | None = None


class FailureKind(StrEnum):
    INVALID = "invalid"
    """the request can never be classified (e.g. text over the worker's limit): the sender's"""
    INFERENCE = "inference"
    """the model failed on it: the service's"""


class RequestFailed(Message):
    """The answer to a ReviewRequest that a worker dead-lettered (version 2). Keyed by
    ``request_id`` on the predictions topic, so the waiting sender hears at once."""

    schema_version: Literal[2] = 2
    request_id: RequestId
    error: FailureKind
    reason: str = Field(min_length=1, max_length=2000)
    worker_id: str = Field(min_length=1, max_length=256)
    model_name: ModelName | None = None
    model_version: str | None = Field(default=None, min_length=1, max_length=64)
    submitted_at: datetime
    failed_at: datetime = Field(default_factory=utc_now)
    source: Source
    reply_to: str | None = Field(default=None, max_length=256)


class Feedback(Message):
    """The true label for an earlier prediction (by request_id) or for a text."""

    schema_version: Literal[1] = SCHEMA_VERSION

    feedback_id: RequestId = Field(default_factory=new_request_id)
    request_id: RequestId | None = None
    text: Annotated[str, StringConstraints(min_length=1)] | None = None
    label: Label
    source: Source
    given_at: datetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _answers_something(self) -> Feedback:
        if self.request_id is None and self.text is None:
            raise ValueError("feedback needs a request_id or a text")
        return self


class ChangeReason(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ALIAS_MOVED = "alias_moved"


class HistogramSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    edges: list[float] = Field(min_length=1, description="bin i is [edges[i], edges[i+1])")
    shares: list[float] = Field(min_length=1, description="the reference share of each bin")

    @model_validator(mode="after")
    def _one_share_per_bin(self) -> HistogramSpec:
        if len(self.edges) != len(self.shares):
            raise ValueError("one share per bin edge")
        return self


class ReferenceProfile(BaseModel):
    """What a version's live traffic is compared with: computed at export on held-out reviews."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(ge=1, description="held-out reviews it was computed on")
    accuracy: float = Field(ge=0.0, le=1.0, description="on those reviews")
    histograms: dict[str, HistogramSpec]


class ModelChanged(Message):
    """The serving alias now points at this version. Keyed by model name on a compacted topic."""

    schema_version: Literal[1, 2] = 2

    model_name: ModelName
    version: str = Field(min_length=1, max_length=64)
    alias: str = Field(min_length=1, max_length=128)
    artifact_uri: str = Field(min_length=1)
    sha256: Sha256
    reason: ChangeReason = ChangeReason.ALIAS_MOVED
    changed_at: datetime = Field(default_factory=utc_now)
    # Version 2: the version's reference profile for the drift monitor (None: unmonitored).
    profile: ReferenceProfile | None = None


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Alert(Message):
    """One alert as Alertmanager delivered it (firing, or resolved), published by the gateway's
    webhook on the alerts topic, keyed by ``fingerprint`` (the same alert's updates in order)."""

    schema_version: Literal[1] = SCHEMA_VERSION

    name: str = Field(min_length=1, max_length=256, description="the rule's alertname")
    status: AlertStatus
    severity: str = Field("none", max_length=64)
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = Field("", max_length=4096)
    description: str = Field("", max_length=16384)
    starts_at: datetime
    ends_at: datetime | None = Field(None, description="set once resolved")
    fingerprint: str = Field(min_length=1, max_length=128)
    generator_url: str = Field("", max_length=4096)
    received_at: datetime = Field(default_factory=utc_now)


class WorkerState(StrEnum):
    STARTING = "starting"  # no model in service yet
    SERVING = "serving"  # serves ``version``, and it is the one the alias names
    LOADING = "loading"  # serves ``version`` (or nothing) while it loads ``wanted_version``
    FAILED = "failed"  # the last load of ``wanted_version`` failed; retrying with backoff
    STOPPED = "stopped"  # said once on a clean shutdown


class WorkerStatus(Message):
    """What one worker serves, published on the compacted fleet topic keyed by ``worker_id``:
    on every change and as a heartbeat. A promotion is acknowledged when every live worker
    reports the new version; a report older than a few heartbeats means the worker is gone."""

    schema_version: Literal[1] = SCHEMA_VERSION

    worker_id: str = Field(min_length=1, max_length=256)
    model_name: ModelName
    alias: str = Field(min_length=1, max_length=128)
    role: Literal["serving", "shadow"] = "serving"
    state: WorkerState
    version: str | None = Field(None, max_length=64, description="the version in service")
    sha256: Sha256 | None = None
    wanted_version: str | None = Field(None, max_length=64, description="the alias's, as heard")
    load_attempts: int = Field(0, ge=0, description="failed loads of wanted_version so far")
    error: str | None = Field(None, max_length=4096, description="why the last load failed")
    lag: int | None = Field(None, ge=0, description="requests not yet consumed by this worker")
    heartbeat_s: float = Field(gt=0, description="the next report comes within this")
    started_at: datetime
    reported_at: datetime = Field(default_factory=utc_now)


class DeadLetter(Message):
    """A record that could not be processed, with the reason and its original bytes."""

    schema_version: Literal[1] = SCHEMA_VERSION

    topic: str
    partition: int
    offset: int
    key: str | None = Field(default=None, description="original key, base64")
    value: str = Field(description="original value, base64, byte for byte")
    reason: str
    error_type: str
    service: str
    failed_at: datetime = Field(default_factory=utc_now)
