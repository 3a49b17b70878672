"""Wiring: build the Starlette app from settings; the one lifespan starts and stops the parts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts import Prediction, RequestFailed
from gateway.alerts import AlertFeed, AlertsTopic
from gateway.api import http_routes
from gateway.auth import KeyRing, load_key_file
from gateway.bus import RequestBus
from gateway.chat import chat_endpoint
from gateway.classifier import Classifier
from gateway.context import Context
from gateway.db import PostgresStats
from gateway.deployment import ModelFeed
from gateway.errors import EXCEPTION_HANDLERS
from gateway.fleet import FleetFeed, FleetTopics
from gateway.idempotency import RememberedAnswers
from gateway.kafka import KafkaBus
from gateway.keyfile import follow_key_file
from gateway.metrics import Metrics
from gateway.models_topic import ModelsTopic
from gateway.ratelimit import KeyRates
from gateway.readiness import readiness_check
from gateway.replies import Replies
from gateway.routing import ApiWebSocketRoute, Guard, Operation
from gateway.schemas import AlertOut, LiveStats, PredictionOut, WsClassify, WsFeedback, WsPing
from gateway.settings import Settings
from gateway.statistics import StatsFeed, StatsStore
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)

Deliver = Callable[[Prediction | RequestFailed], bool]
BusFactory = Callable[[Deliver, Metrics], RequestBus]

# Same-origin everything: no CDN, no inline script, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

WS_OPERATION = Operation(
    "The chat WebSocket: classify, feedback, live statistics, alerts",
    "ui",
    None,  # checked by the endpoint at the handshake: viewer to connect, client to classify
    ok_status=101,
    errors={401: "missing or invalid API key", 403: "the role or the Origin is refused"},
    description="Authenticate with an Authorization/X-API-Key header, or offer the subprotocols "
    "'reviewstream' and 'bearer.<key>'. Needs viewer; classify and feedback need client. "
    "Message types are in x-messages; see gateway/chat.py.",
    extra_models=(WsClassify, WsFeedback, WsPing, PredictionOut, LiveStats, AlertOut),
    extensions={"x-websocket": True, "x-required-role": "viewer"},
)


def load_keyring(settings: Settings) -> KeyRing:
    records = list(settings.api_keys)
    if settings.api_keys_file is not None:
        records += load_key_file(settings.api_keys_file)
    return KeyRing(records, open_mode=settings.open_mode)


def kafka_bus(settings: Settings, supervisor: Supervisor) -> BusFactory:
    def build(deliver: Deliver, metrics: Metrics) -> RequestBus:
        return KafkaBus(
            settings.kafka,
            instance_id=settings.instance_id,
            on_reply=deliver,
            metrics=metrics,
            publish_timeout_s=settings.publish_timeout_s,
            retry_after_s=settings.unavailable_retry_after_s,
            supervisor=supervisor,
        )

    return build


def create_app(
    settings: Settings,
    *,
    bus: BusFactory | None = None,
    stats: StatsStore | None = None,
    models: ModelFeed | None = None,
    alerts: AlertFeed | None = None,
    fleet: FleetFeed | None = None,
) -> Starlette:
    """The real Kafka bus, models, alerts and fleet topics and PostgreSQL store unless tests
    hand in their own."""
    keyring = load_keyring(settings)
    rates = KeyRates(settings.rate_limit)
    metrics = Metrics()
    # The side tasks (replies, models topic, live statistics) must not die quietly.
    supervisor = Supervisor("gateway", metrics.registry)
    replies = Replies(
        settings.max_in_flight,
        per_owner=settings.max_in_flight_per_key,
        retry_after_s=settings.retry_after_s,
    )
    the_bus = (bus or kafka_bus(settings, supervisor))(replies.resolve, metrics)
    store = stats or PostgresStats(settings.database)
    # One check of the models topic's signatures for both of its readers here.
    verifier = settings.trusted_keys.verifier(metrics.models_refused)
    deployed = models or ModelsTopic(
        settings.kafka, client_id=settings.instance_id, supervisor=supervisor, verifier=verifier
    )
    followed = alerts or AlertsTopic(
        settings.kafka,
        client_id=settings.instance_id,
        supervisor=supervisor,
        keep=settings.alerts_kept,
    )
    workers = fleet or FleetTopics(
        settings.kafka, client_id=settings.instance_id, supervisor=supervisor, verifier=verifier
    )
    classifier = Classifier(
        the_bus,
        replies,
        metrics,
        instance_id=settings.instance_id,
        reply_timeout_s=settings.reply_timeout_s,
        answers=RememberedAnswers(
            ttl_s=settings.idempotency_ttl_s, max_entries=settings.idempotency_max_entries
        ),
        stored_answer=store.answer,
        models=deployed,
        no_model_retry_after_s=settings.unavailable_retry_after_s,
    )
    feed = StatsFeed(
        store,
        interval_s=settings.stats_interval_s,
        window_minutes=settings.stats_window_minutes,
        supervisor=supervisor,
    )
    rt = Context(
        settings,
        keyring,
        metrics,
        the_bus,
        classifier,
        store,
        feed,
        deployed,
        supervisor,
        followed,
        workers,
        rates,
        readiness_check(the_bus, store, supervisor, cache_s=settings.readiness_cache_s),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.open_mode:
            log.warning("=" * 72)
            log.warning("OPEN MODE: authentication is OFF, every caller is admin.")
            log.warning("For local development only; unset RS_GATEWAY_OPEN_MODE elsewhere.")
            log.warning("=" * 72)
        elif not len(keyring):
            log.warning("no API keys configured: every protected route answers 401")
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(the_bus)
            await stack.enter_async_context(deployed)
            await stack.enter_async_context(followed)
            await stack.enter_async_context(workers)
            await stack.enter_async_context(store)
            await stack.enter_async_context(feed)
            stack.push_async_callback(supervisor.stop)
            if settings.api_keys_file is not None and not settings.open_mode:
                supervisor.start(
                    follow_key_file(settings.api_keys_file, keyring, also=settings.api_keys),
                    name="api-keys-file",
                )
            log.info("gateway %s started", settings.instance_id)
            yield
        log.info("gateway %s stopped", settings.instance_id)

    guard = Guard(keyring, metrics, rates)
    routes = [
        *http_routes(rt, guard),
        ApiWebSocketRoute("/v1/ws", chat_endpoint(rt), operation=WS_OPERATION),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(SecurityHeaders)],
    )
    app.state.runtime = rt
    return app


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
