"""Topic names, partition counts and retention: part of the contract, but configuration.

Every service that talks to Kafka embeds :class:`KafkaSettings`, so one set of ``RS_KAFKA_*``
variables configures them all.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The models topic is compacted by key: one record per key survives. The serving alias keeps the
# bare model name (what every consumer and every old record knows); any other alias (a
# challenger in shadow) gets a key of its own, so that its event never erases the serving one.
SERVING_ALIAS = "production"


def models_key(model_name: str, alias: str) -> str:
    """The models topic's key of the events about ``model_name``'s ``alias``."""
    return model_name if alias == SERVING_ALIAS else f"{model_name}@{alias}"


# A version the registry watcher checked ahead of its promotion is announced as a ModelChanged of
# the pseudo-alias ``<alias>~candidate`` (key ``<model>@<alias>~candidate``), so that workers can
# fetch and verify it before the alias names it. MLflow allows only letters, digits, "_" and "-"
# in an alias, so no real alias is ever named so: every reader that follows a real alias (or
# the serving one only) ignores these events without knowing them, and no schema changes.
CANDIDATE_SUFFIX = "~candidate"


def candidate_alias(alias: str) -> str:
    """The pseudo-alias under which ``alias``'s next version is announced ahead of its move."""
    return f"{alias}{CANDIDATE_SUFFIX}"


def is_candidate(alias: str) -> bool:
    return alias.endswith(CANDIDATE_SUFFIX)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_KAFKA_", frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    requests_topic: str = "reviews.requests"
    predictions_topic: str = "reviews.predictions"
    feedback_topic: str = "reviews.feedback"
    models_topic: str = "models.events"
    alerts_topic: str = "models.alerts"
    fleet_topic: str = "models.fleet"
    # A challenger answers here, never on the predictions topic: no client sees a shadow answer.
    shadow_predictions_topic: str = "reviews.predictions.shadow"
    alerts_retention_ms: int = 30 * 24 * 3600 * 1000
    # More partitions than workers lets the group grow without re-partitioning.
    requests_partitions: int = 6
    predictions_partitions: int = 6
    feedback_partitions: int = 3
    retention_ms: int = 7 * 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    # How a client authenticates (contracts.kafka_access says what each principal may do).
    # PLAINTEXT: none (the local loopback listener); SASL_*: SCRAM with username and password
    # (or a file holding it); *SSL: TLS, verified against ssl_ca_file (else the system CAs).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    ssl_ca_file: Path | None = None

    @field_validator("username", "password", "password_file", "ssl_ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose and the Kubernetes ConfigMap pass an unset variable as "".
        return None if value == "" else value

    @model_validator(mode="after")
    def _credentials_fit_the_protocol(self) -> Self:
        sasl = self.security_protocol.startswith("SASL_")
        if self.password is not None and self.password_file is not None:
            raise ValueError("set RS_KAFKA_PASSWORD or RS_KAFKA_PASSWORD_FILE, not both")
        has_password = self.password is not None or self.password_file is not None
        if sasl and (self.username is None or not has_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs RS_KAFKA_USERNAME and "
                "RS_KAFKA_PASSWORD (or RS_KAFKA_PASSWORD_FILE)"
            )
        if not sasl and (self.username is not None or has_password):
            raise ValueError(
                f"a Kafka username/password is only used with SASL_PLAINTEXT or SASL_SSL, "
                f"not {self.security_protocol}: set RS_KAFKA_SECURITY_PROTOCOL"
            )
        if self.ssl_ca_file is not None and not self.security_protocol.endswith("SSL"):
            raise ValueError(
                f"RS_KAFKA_SSL_CA_FILE needs SSL or SASL_SSL, not {self.security_protocol}"
            )
        return self

    def secret(self) -> str | None:
        """The SASL password: the setting, or the file's first line (read now, so a rotated
        file is seen by the next client)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read RS_KAFKA_PASSWORD_FILE: {exc}") from exc
        return None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.security_protocol.endswith("SSL"):
            return None
        cafile = None if self.ssl_ca_file is None else str(self.ssl_ca_file)
        return ssl.create_default_context(cafile=cafile)

    def client_options(self) -> dict[str, Any]:
        """The security keyword arguments of every aiokafka client (producer, consumer, admin):
        the one place that turns these settings into a connection."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.endswith("SSL"):
            options["ssl_context"] = self.ssl_context()
        if self.security_protocol.startswith("SASL_"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.secret()
        return options

    def client(self, **options: Any) -> dict[str, Any]:
        """``bootstrap_servers`` and the security options, for ``AIOKafka*(**kafka.client())``."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.client_options(), **options}

    def prefixed(self, prefix: str, **changes: object) -> KafkaSettings:
        """The same settings with every topic named ``<prefix>.<kind>``: tests and benchmarks
        get topics of their own."""
        names = {
            field: f"{prefix}.{field.removesuffix('_topic').replace('_', '.')}"
            for field in type(self).model_fields
            if field.endswith("_topic")
        }
        return self.model_copy(update=names | changes)

    @staticmethod
    def dlq(topic: str) -> str:
        return f"{topic}.dlq"

    def topic_specs(self) -> list[TopicSpec]:
        retention = {"retention.ms": str(self.retention_ms)}
        dlq_retention = {"retention.ms": str(self.dlq_retention_ms)}
        data = [
            TopicSpec(self.requests_topic, self.requests_partitions, retention),
            TopicSpec(self.predictions_topic, self.predictions_partitions, retention),
            TopicSpec(self.feedback_topic, self.feedback_partitions, retention),
            TopicSpec(self.shadow_predictions_topic, self.predictions_partitions, retention),
        ]
        dlqs = [TopicSpec(self.dlq(t.name), 1, dlq_retention) for t in data]
        # Compacted, keyed by models_key: a late starter reads the current model per name/alias.
        models = TopicSpec(self.models_topic, 1, {"cleanup.policy": "compact"})
        # Alertmanager's alerts as the gateway received them: the record of what fired, kept
        # 30 days, one partition so every reader sees them in the order they came.
        alerts = TopicSpec(self.alerts_topic, 1, {"retention.ms": str(self.alerts_retention_ms)})
        # Keyed by worker id, compacted to the last report of each worker; a worker gone for
        # longer than the retention (its heartbeat stopped) ages out.
        fleet = TopicSpec(self.fleet_topic, 1, {"cleanup.policy": "compact,delete", **retention})
        return [*data, *dlqs, models, alerts, fleet]
