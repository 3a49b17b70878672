"""Settings of the gateway (``RS_GATEWAY_*``), read once in ``__main__``.

Kafka comes from the shared ``RS_KAFKA_*`` variables and PostgreSQL from ``DATABASE_URL``,
like every other service.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import KafkaSettings
from gateway.auth import KeyRecord
from gateway.ratelimit import parse_rates
from runtime.database import DatabaseSettings
from runtime.signing import TrustedKeys


def default_instance_id() -> str:
    """Unique per process: replies are routed back to the replica that asked."""
    return f"gateway-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_GATEWAY_", frozen=True)

    host: str = Field("127.0.0.1", description="interface to bind (API, UI)")
    port: int = Field(8000, ge=0, le=65535)
    # The probes' and Prometheus' door: /healthz, /readyz, /metrics without a key. Bind it
    # where only the cluster reaches it; no Ingress routes it.
    ops_host: str = Field("127.0.0.1", description="interface of the operations port")
    ops_port: int = Field(
        9100, ge=0, le=65535, description="/healthz, /readyz and /metrics without a key (0: free)"
    )
    instance_id: str = Field(
        default_factory=default_instance_id,
        min_length=1,
        max_length=200,
        description="sent as reply_to; each replica must have its own",
    )
    reply_timeout_s: float = Field(10.0, gt=0, description="wait for a prediction, then 504")
    publish_timeout_s: float = Field(5.0, gt=0, description="wait for Kafka to ack, then 503")
    max_in_flight: int = Field(256, ge=1, description="reviews awaiting a reply, then 429")
    max_in_flight_per_key: int = Field(
        128,
        ge=1,
        description="reviews one API key may have awaiting a reply, then 429: no client takes "
        "every slot (open mode: only max_in_flight)",
    )
    max_batch: int = Field(32, ge=1, description="reviews in one batch request")
    max_text_chars: int = Field(5000, ge=1, description="characters in one review")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="request body / WS message")
    ws_max_pending: int = Field(
        8, ge=1, description="classifications, explanations and feedback one socket may await"
    )
    ws_idle_timeout_s: float = Field(
        120.0, gt=0, description="close a WebSocket that sent nothing this long (the page pings)"
    )
    ws_max_per_key: int = Field(
        16, ge=1, description="open WebSockets per API key; one more is refused with 429"
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After when saturated (429)")
    rate_limit: str = Field(
        "100/second;3000/minute",
        description="requests (and WebSocket messages) per API key, as moving windows; "
        "empty: no limit. Not applied in open mode",
    )
    readiness_cache_s: float = Field(
        1.0, ge=0, description="/readyz checks Kafka and the database at most this often"
    )
    unavailable_retry_after_s: int = Field(5, ge=1, description="Retry-After when Kafka is down")
    idempotency_ttl_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="how long a retry with the same Idempotency-Key gets the first answer",
    )
    idempotency_max_entries: int = Field(
        100_000, ge=1, description="answers remembered in memory for Idempotency-Key retries"
    )
    stats_interval_s: float = Field(2.0, gt=0, description="how often the live panel polls")
    stats_window_minutes: int = Field(30, ge=1, le=1440, description="the live chart's span")
    alerts_kept: int = Field(
        100, ge=1, le=10_000, description="recent alerts kept in memory for /v1/alerts and the UI"
    )
    api_keys_file: Path | None = Field(None, description="JSON file of hashed API keys")
    api_keys: list[KeyRecord] = Field(
        default_factory=list, description="hashed API keys as JSON, added to the file's"
    )
    open_mode: bool = Field(
        False, description="no authentication at all: local development only (make up)"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="extra browser origins allowed to open the WebSocket (same origin always is)",
    )
    tls_certfile: Path | None = Field(None, description="PEM certificate: serve HTTPS")
    tls_keyfile: Path | None = Field(None, description="PEM private key of the certificate")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    trusted_keys: TrustedKeys = Field(default_factory=TrustedKeys)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    @field_validator("rate_limit")
    @classmethod
    def _rates_parse(cls, value: str) -> str:
        try:
            parse_rates(value)
        except ValueError as exc:
            raise ValueError(f"expected e.g. '100/second;3000/minute': {exc}") from None
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both RS_GATEWAY_TLS_CERTFILE and RS_GATEWAY_TLS_KEYFILE, or none")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_certfile is not None
