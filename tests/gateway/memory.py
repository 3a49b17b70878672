"""In-memory implementations of the gateway's ports, for unit tests (STYLE: fakes at the ports).

:class:`MemoryBus` records what the gateway publishes; it never answers by itself. A test that
wants a reply hands a Prediction to ``deliver``, as the Kafka adapter would when one arrives.
The integration tests use the real Kafka and PostgreSQL instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from starlette.applications import Starlette
from starlette.testclient import WebSocketTestSession

from contracts import (
    Alert,
    Feedback,
    ModelChanged,
    Prediction,
    RequestFailed,
    ReviewRequest,
    Timings,
)
from gateway.alerts import AlertBoard
from gateway.app import create_app
from gateway.deployment import Deployment, Deployments, ModelState
from gateway.errors import KafkaUnavailable, StatsUnavailable
from gateway.metrics import Metrics
from gateway.schemas import (
    DriftOut,
    DriftQuery,
    RecentListOut,
    SeriesPoint,
    ShadowOut,
    ShadowQuery,
    SummaryOut,
    WindowsOut,
    WindowsQuery,
)
from gateway.settings import Settings
from runtime.fleet import FleetView


class Lifecycle:
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class MemoryBus(Lifecycle):
    def __init__(
        self, deliver: Callable[[Prediction | RequestFailed], bool], metrics: Metrics
    ) -> None:
        self.deliver = deliver
        self.requests: list[ReviewRequest] = []
        self.feedback: list[Feedback] = []
        self.alerts: list[Alert] = []
        self.up = True
        self.checks = 0

    @property
    def connected(self) -> bool:
        return self.up

    async def publish_requests(self, requests: Sequence[ReviewRequest]) -> None:
        self._require()
        self.requests += requests

    async def publish_feedback(self, feedback: Feedback) -> None:
        self._require()
        self.feedback.append(feedback)

    async def publish_alerts(self, alerts: Sequence[Alert]) -> None:
        self._require()
        self.alerts += alerts

    async def check(self) -> bool:
        self.checks += 1
        return self.up

    def _require(self) -> None:
        if not self.up:
            raise KafkaUnavailable("Kafka is down (memory bus)", retry_after=5)


def prediction_for(
    request: ReviewRequest, *, label: int = 1, probability: float = 0.9
) -> Prediction:
    return Prediction(
        request_id=request.request_id,
        label=1 if label else 0,
        probability=probability,
        model_name="reviewstream-sentiment",
        model_version="7",
        worker_id="unit",
        submitted_at=request.submitted_at,
        source=request.source,
        timings=Timings(queue_ms=1.0, inference_ms=1.0, batch_size=1),
        reply_to=request.reply_to,
    )


class MemoryStats(Lifecycle):
    def __init__(self) -> None:
        self.up = True
        self.predictions = 0
        self.positives = 0
        self.stored: dict[str, Prediction] = {}

    def _require(self) -> None:
        if not self.up:
            raise StatsUnavailable("the statistics database is unreachable (memory)", retry_after=5)

    async def summary(self) -> SummaryOut:
        self._require()
        return SummaryOut(
            predictions=self.predictions,
            positives=self.positives,
            negatives=self.predictions - self.positives,
            positive_share=self.positives / self.predictions if self.predictions else None,
            labelled=0,
            correct=0,
            accuracy=None,
            with_label=0,
            with_label_share=None,
            feedback=0,
            feedback_waiting=0,
            models=[],
        )

    async def windows(self, query: WindowsQuery) -> WindowsOut:
        self._require()
        return WindowsOut(granularity=query.granularity, windows=[])

    async def recent(self, limit: int) -> RecentListOut:
        self._require()
        return RecentListOut(predictions=[])

    async def drift(self, query: DriftQuery) -> DriftOut:
        self._require()
        return DriftOut(versions=[], checks=[])

    async def shadow(self, query: ShadowQuery) -> ShadowOut:
        self._require()
        return ShadowOut(comparisons=[])

    async def series(self, minutes: int) -> list[SeriesPoint]:
        self._require()
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        return [SeriesPoint(window_start=now, predictions=self.predictions,
                            positives=self.positives, labelled=0, correct=0)]  # fmt: skip

    async def check(self) -> bool:
        return self.up

    async def answer(self, request_id: str, within_s: float) -> Prediction | None:
        self._require()
        return self.stored.get(request_id)


DEPLOYED = Deployment(ModelState.DEPLOYED, "reviewstream-sentiment", "7")


class MemoryModels(Lifecycle):
    """The models topic as the test says: model 7 is deployed unless ``set`` says otherwise."""

    def __init__(self, deployment: Deployment = DEPLOYED) -> None:
        self.board = Deployments(deployment)

    @property
    def current(self) -> Deployment:
        return self.board.current

    def changes(self) -> AsyncIterator[Deployment]:
        return self.board.changes()

    def set(self, deployment: Deployment) -> None:
        self.board.set(deployment)


class MemoryAlerts(Lifecycle):
    """The alerts topic as the test says: ``board.add`` is an alert read back from it."""

    def __init__(self, keep: int = 100) -> None:
        self.board = AlertBoard(keep)


class MemoryFleet(Lifecycle):
    """The fleet and models topics as the test says: ``view`` and ``announced`` are what was
    read back from them."""

    def __init__(self) -> None:
        self.view = FleetView()
        self.announced: dict[str, ModelChanged] = {}


def memory_app(**overrides: object) -> tuple[Starlette, MemoryBus, MemoryStats]:
    """The real app and core over the in-memory ports; settings default to open mode off.
    The models feed (``app.state.runtime.models``) says model 7 is deployed."""
    stats = MemoryStats()
    defaults = {"instance_id": "gw-unit", "reply_timeout_s": 0.3, "stats_interval_s": 0.05}
    settings = Settings.model_validate({**defaults, **overrides})
    app = create_app(
        settings,
        bus=MemoryBus,
        stats=stats,
        models=MemoryModels(),
        alerts=MemoryAlerts(),
        fleet=MemoryFleet(),
    )
    bus = app.state.runtime.bus
    assert isinstance(bus, MemoryBus)
    return app, bus, stats


def receive_type(ws: WebSocketTestSession, kind: str, *, limit: int = 20) -> dict[str, Any]:
    """The next message of this type, skipping others (stats pushes come at any time)."""
    for _ in range(limit):
        message = ws.receive_json()
        if message["type"] == kind:
            assert isinstance(message, dict)
            return message
    raise AssertionError(f"no {kind!r} message among the next {limit}")
