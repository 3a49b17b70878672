"""Prometheus metrics of one gateway, in its own registry (so several apps share a process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from runtime.metrics import service_registry
from runtime.signing import refused_counter

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = service_registry()
        r = self.registry
        self.models_refused = refused_counter("gateway", r)
        self.http_requests = Counter(
            "rs_gateway_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.classify_seconds = Histogram(
            "rs_gateway_classify_seconds",
            "From publishing a review to its prediction arriving, per transport",
            ["transport"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.reviews = Counter(
            "rs_gateway_reviews",
            "Reviews submitted for classification, by transport and outcome",
            ["transport", "outcome"],
            registry=r,
        )
        self.replies = Counter(
            "rs_gateway_replies",
            "Predictions read from Kafka: matched (awaited here), late (for this instance but "
            "no longer awaited), other (another replica's), invalid (undecodable)",
            ["outcome"],
            registry=r,
        )
        self.feedback = Counter(
            "rs_gateway_feedback", "Feedback records published", ["transport"], registry=r
        )
        self.in_flight = Gauge(
            "rs_gateway_in_flight", "Reviews awaiting a reply on this instance", registry=r
        )
        self.websockets = Gauge("rs_gateway_websockets", "Open WebSocket connections", registry=r)
        self.kafka_connected = Gauge(
            "rs_gateway_kafka_connected", "1 when the Kafka clients are started", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
