"""Topic names, partition counts and retention: part of the contract, but configuration.

Every service that talks to Kafka embeds :class:`KafkaSettings`, so one set of ``RS_KAFKA_*``
variables configures them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_settings import BaseSettings, SettingsConfigDict

# The models topic is compacted by key: one record per key survives. The serving alias keeps the
# bare model name (what every consumer and every old record knows); any other alias (a
# challenger in shadow) gets a key of its own, so that its event never erases the serving one.
SERVING_ALIAS = "production"


def models_key(model_name: str, alias: str) -> str:
    """The models topic's key of the events about ``model_name``'s ``alias``."""
    return model_name if alias == SERVING_ALIAS else f"{model_name}@{alias}"


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
