"""Topic names, partition counts and retention: part of the contract, but configuration.

Every service that talks to Kafka embeds :class:`KafkaSettings`, so one set of ``RS_KAFKA_*``
variables configures them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_settings import BaseSettings, SettingsConfigDict


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
    alerts_retention_ms: int = 30 * 24 * 3600 * 1000
    # More partitions than workers lets the group grow without re-partitioning.
    requests_partitions: int = 6
    predictions_partitions: int = 6
    feedback_partitions: int = 3
    retention_ms: int = 7 * 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000

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
        ]
        dlqs = [TopicSpec(self.dlq(t.name), 1, dlq_retention) for t in data]
        # Compacted and keyed by model name: a late starter reads the current model per name.
        models = TopicSpec(self.models_topic, 1, {"cleanup.policy": "compact"})
        # Alertmanager's alerts as the gateway received them: the record of what fired, kept
        # 30 days, one partition so every reader sees them in the order they came.
        alerts = TopicSpec(self.alerts_topic, 1, {"retention.ms": str(self.alerts_retention_ms)})
        return [*data, *dlqs, models, alerts]
