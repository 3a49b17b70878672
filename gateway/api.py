"""The HTTP routes: classify, feedback, statistics, session, operations, health and docs."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

from contracts import Source
from contracts.messages import utc_now
from gateway.auth import Role
from gateway.classifier import Idempotency
from gateway.context import Context
from gateway.decoding import read_json, read_query
from gateway.idempotency import check_key
from gateway.metrics import CONTENT_TYPE
from gateway.openapi import openapi_document
from gateway.routing import ApiMount, Guard, Operation, principal_of
from gateway.schemas import (
    AdminStatusOut,
    AlertListOut,
    AlertmanagerWebhookIn,
    AlertOut,
    AlertsPublishedOut,
    BatchIn,
    BatchOut,
    DriftOut,
    DriftQuery,
    EmptyQuery,
    ExplainedOut,
    ExplainIn,
    FeedbackIn,
    FeedbackOut,
    FleetOut,
    HealthOut,
    ModelOut,
    PredictionOut,
    ReadyOut,
    RecentListOut,
    RecentQuery,
    ReviewIn,
    SessionOut,
    ShadowOut,
    ShadowQuery,
    SummaryOut,
    WindowsOut,
    WindowsQuery,
    dump,
)

STATIC = Path(__file__).parent / "static"
TITLE = "reviewstream gateway"
VERSION = version("reviewstream")

BAD_INPUT = {
    400: "the body is not valid JSON",
    413: "the body is too large",
    415: "the body is not application/json",
    422: "a field is missing, unknown, of the wrong type, empty or too long",
}
PUBLISH = {
    429: "too many reviews already await a reply here (Retry-After)",
    503: "Kafka is unreachable (Retry-After)",
}
NO_MODEL = "no model is deployed yet (no_model), or Kafka is unreachable (Retry-After)"
CLASSIFY = {
    **BAD_INPUT,
    **PUBLISH,
    503: NO_MODEL,
    422: "a field is missing, unknown, of the wrong type, empty or too long; a worker refused "
    "the review (rejected_by_worker); or the Idempotency-Key was used for another review",
    502: "the model failed on the review (inference_failed)",
}
IDEMPOTENT = (
    " Send an Idempotency-Key header (1-128 visible ASCII characters) to make retries safe: "
    "a retry with the same key within RS_GATEWAY_IDEMPOTENCY_TTL_S gets the same answer and "
    "is counted once."
)
STATS = {503: "the statistics database is unreachable", 422: "a query parameter is wrong"}


def json(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(dump(model), status_code=status)


def idempotency(request: Request) -> Idempotency | None:
    """The caller's ``Idempotency-Key``, scoped to its API key's name, if it sent one."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    return Idempotency(principal_of(request).name, check_key(key))


def owner(request: Request) -> str | None:
    """Whose share of the reply slots a request takes: its API key's (none in open mode)."""
    return principal_of(request).key_sha256


def http_routes(rt: Context, guard: Guard) -> list[BaseRoute]:
    s = rt.settings
    document: dict[str, Any] = {}

    async def classify(request: Request) -> Response:
        review = await read_json(request, ReviewIn, limits=rt.limits, max_bytes=s.max_body_bytes)
        [prediction] = await rt.classifier.classify(
            [review], Source.REST, idempotency(request), owner=owner(request)
        )
        return json(PredictionOut.of(prediction))

    async def classify_batch(request: Request) -> Response:
        batch = await read_json(request, BatchIn, limits=rt.limits, max_bytes=s.max_body_bytes)
        predictions = await rt.classifier.classify(
            batch.reviews, Source.REST, idempotency(request), owner=owner(request)
        )
        return json(BatchOut(results=[PredictionOut.of(p) for p in predictions]))

    async def explain(request: Request) -> Response:
        review = await read_json(request, ExplainIn, limits=rt.limits, max_bytes=s.max_body_bytes)
        prediction, explanation = await rt.classifier.explain(
            review, Source.REST, owner=owner(request)
        )
        return json(ExplainedOut.explained(prediction, explanation))

    async def feedback(request: Request) -> Response:
        given = await read_json(request, FeedbackIn, limits=rt.limits, max_bytes=s.max_body_bytes)
        sent = await rt.classifier.feedback(given, Source.REST)
        out = FeedbackOut(
            feedback_id=sent.feedback_id, request_id=sent.request_id, label=sent.label
        )
        return json(out, status=202)

    async def stats_summary(request: Request) -> Response:
        read_query(request, EmptyQuery)
        return json(await rt.stats.summary())

    async def stats_windows(request: Request) -> Response:
        return json(await rt.stats.windows(read_query(request, WindowsQuery)))

    async def stats_drift(request: Request) -> Response:
        return json(await rt.stats.drift(read_query(request, DriftQuery)))

    async def stats_shadow(request: Request) -> Response:
        return json(await rt.stats.shadow(read_query(request, ShadowQuery)))

    async def stats_recent(request: Request) -> Response:
        return json(await rt.stats.recent(read_query(request, RecentQuery).limit))

    async def session(request: Request) -> Response:
        principal = principal_of(request)
        return json(
            SessionOut(
                name=principal.name,
                role=principal.role.label,
                open_mode=s.open_mode,
                instance_id=s.instance_id,
                max_text_chars=s.max_text_chars,
                reply_timeout_s=s.reply_timeout_s,
            )
        )

    async def admin_status(request: Request) -> Response:
        return json(
            AdminStatusOut(
                instance_id=s.instance_id,
                open_mode=s.open_mode,
                kafka_connected=rt.bus.connected,
                in_flight=rt.classifier.replies.in_flight,
                max_in_flight=s.max_in_flight,
                websockets=rt.websockets,
                reply_timeout_s=s.reply_timeout_s,
                api_keys=len(rt.keyring),
                model=ModelOut.of(rt.models.current),
            )
        )

    async def alerts_webhook(request: Request) -> Response:
        hook = await read_json(
            request, AlertmanagerWebhookIn, limits=rt.limits, max_bytes=s.max_body_bytes
        )
        alerts = [a.alert() for a in hook.alerts]
        await rt.bus.publish_alerts(alerts)
        return json(AlertsPublishedOut(published=len(alerts)), status=202)

    async def alerts(request: Request) -> Response:
        read_query(request, EmptyQuery)
        return json(AlertListOut(alerts=[AlertOut.of(a) for a in rt.alerts.board.recent()]))

    async def fleet(request: Request) -> Response:
        read_query(request, EmptyQuery)
        return json(FleetOut.of(rt.fleet.view, rt.fleet.announced, utc_now()))

    async def model(request: Request) -> Response:
        return json(ModelOut.of(rt.models.current))

    async def healthz(request: Request) -> Response:
        return json(HealthOut(service="gateway"))

    async def readyz(request: Request) -> Response:
        readiness = await rt.readiness()
        return JSONResponse(readiness.body("gateway"), status_code=200 if readiness.ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(rt.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi_json(request: Request) -> Response:
        if not document:  # the routes are final once the app serves; build it once
            document.update(openapi_document(request.app.routes, title=TITLE, version=VERSION))
        return JSONResponse(document)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    client, viewer, admin = Role.CLIENT, Role.VIEWER, Role.ADMIN
    r = guard.route
    return [
        r("/", index, method="GET", op=Operation(
            "The chat page", "ui", None, ok_media="text/html")),
        ApiMount("/static", StaticFiles(directory=STATIC), name="static", operation=Operation(
            "The chat page's scripts and styles (served here, no CDN)", "ui", None,
            ok_media="application/octet-stream", errors={404: "no such file"})),
        r("/v1/classify", classify, method="POST", op=Operation(
            "Classify one review", "classify", client, body=ReviewIn, ok_model=PredictionOut,
            errors={**CLASSIFY, 504: "no prediction came in time"},
            description="Publishes a ReviewRequest and waits for its Prediction "
            "(RS_GATEWAY_REPLY_TIMEOUT_S). A label sent with the review is recorded as "
            "feedback." + IDEMPOTENT)),
        r("/v1/classify/batch", classify_batch, method="POST", op=Operation(
            "Classify several reviews", "classify", client, body=BatchIn, ok_model=BatchOut,
            errors={**CLASSIFY, 504: "some prediction did not come in time"},
            description="One Idempotency-Key names the whole batch." + IDEMPOTENT)),
        r("/v1/explain", explain, method="POST", op=Operation(
            "Classify one review and say which words decided it", "classify", client,
            body=ExplainIn, ok_model=ExplainedOut,
            errors={**CLASSIFY, 504: "no prediction came in time"},
            description="Like /v1/classify, with a weight per word from the version that "
            "answered. An explanation is a question about a review, not traffic: the "
            "statistics do not count it.")),
        r("/v1/feedback", feedback, method="POST", op=Operation(
            "Send the true label for a request or a text", "feedback", client, ok_status=202,
            body=FeedbackIn, ok_model=FeedbackOut, errors={**BAD_INPUT, 503: PUBLISH[503]})),
        r("/v1/stats/summary", stats_summary, method="GET", op=Operation(
            "Totals, label split and live accuracy per model version", "stats", viewer,
            ok_model=SummaryOut, query=EmptyQuery, errors=STATS)),
        r("/v1/stats/windows", stats_windows, method="GET", op=Operation(
            "Counts and accuracy per model version and time window", "stats", viewer,
            ok_model=WindowsOut, query=WindowsQuery, errors=STATS)),
        r("/v1/stats/drift", stats_drift, method="GET", op=Operation(
            "Drift checks per model version: each feature against its reference profile, and "
            "live accuracy", "stats", viewer, ok_model=DriftOut, query=DriftQuery,
            errors=STATS)),
        r("/v1/stats/shadow", stats_shadow, method="GET", op=Operation(
            "A challenger in shadow beside production: agreement and live accuracy on the same "
            "reviews", "stats", viewer, ok_model=ShadowOut, query=ShadowQuery, errors=STATS,
            description="Per challenger version (python -m export shadow V) and production "
            "version: reviews both answered, the share given the same label, and each one's "
            "accuracy on those that got feedback (the latest feedback wins). No client ever "
            "gets a shadow answer.")),
        r("/v1/stats/recent", stats_recent, method="GET", op=Operation(
            "The most recent predictions", "stats", viewer, ok_model=RecentListOut,
            query=RecentQuery, errors=STATS)),
        r("/v1/session", session, method="GET", op=Operation(
            "Who this key is, and the limits the UI needs", "session", viewer,
            ok_model=SessionOut)),
        r("/v1/model", model, method="GET", op=Operation(
            "The model deployed now, as the models topic announced it", "session", viewer,
            ok_model=ModelOut, description="state none: classifications answer 503 no_model "
            "at once until a model version is promoted.")),
        r("/v1/admin/status", admin_status, method="GET", op=Operation(
            "This instance's operational state", "admin", admin, ok_model=AdminStatusOut)),
        r("/v1/admin/alerts", alerts_webhook, method="POST", op=Operation(
            "Alertmanager's webhook: publish its alerts on the alerts topic", "admin", admin,
            ok_status=202, body=AlertmanagerWebhookIn, ok_model=AlertsPublishedOut,
            errors={**BAD_INPUT, 503: PUBLISH[503]},
            description="Takes Alertmanager's webhook body (version 4) and publishes each "
            "alert as an Alert message on RS_KAFKA_ALERTS_TOPIC, where every gateway reads "
            "it back. A 4xx is final for Alertmanager; a 503 makes it retry.")),
        r("/v1/admin/fleet", fleet, method="GET", op=Operation(
            "Every worker, the version it serves, and whether the fleet acknowledged the "
            "announced version", "admin", admin, ok_model=FleetOut, query=EmptyQuery,
            description="Read back from the fleet topic (each worker's WorkerStatus, sent on "
            "every change and every RS_WORKER_HEARTBEAT_S) and the models topic. A worker is "
            "live while it reported within 3 heartbeats and did not stop; a promotion is "
            "complete when every live worker serves the announced version.")),
        r("/v1/alerts", alerts, method="GET", op=Operation(
            "The recent alerts, firing or resolved", "session", viewer, ok_model=AlertListOut,
            query=EmptyQuery, description="Read back from the alerts topic: the last "
            "RS_GATEWAY_ALERTS_KEPT alerts, one entry per alert with its latest status.")),
        r("/healthz", healthz, method="GET", op=Operation(
            "Alive", "operations", None, ok_model=HealthOut)),
        r("/readyz", readyz, method="GET", op=Operation(
            "Ready: Kafka reachable, no background task died (PostgreSQL: degraded)",
            "operations", admin, ok_model=ReadyOut,
            description="Also without a key on the operations port (RS_GATEWAY_OPS_PORT), "
            "which the probes use and no Ingress routes.",
            errors={503: "a dependency is unreachable (the body says which)"},
            error_model=ReadyOut)),
        r("/metrics", metrics, method="GET", op=Operation(
            "Prometheus metrics", "operations", admin, ok_media="text/plain",
            description="Also without a key on the operations port (RS_GATEWAY_OPS_PORT), "
            "which Prometheus scrapes.")),
        r("/openapi.json", openapi_json, method="GET", op=Operation(
            "This document", "operations", viewer)),
    ]  # fmt: skip
