"""The producers' settings: ``RS_PRODUCER_*`` environment variables, plus ``RS_KAFKA_*``.

Command-line options override the defaults named here for one run.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import KafkaSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_PRODUCER_", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    connect_timeout_s: float = Field(
        default=15.0, gt=0, description="how long to keep trying to reach Kafka at start"
    )
    request_timeout_ms: int = Field(
        default=30_000, gt=0, description="Kafka client request timeout (a send's delivery too)"
    )
    linger_ms: int = Field(default=5, ge=0, description="producer batching delay")
    max_in_flight: int = Field(
        default=1000, gt=0, description="sends awaiting delivery before the sender waits"
    )
    answer_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="after the last send, stop waiting once no prediction came for this long",
    )
    feedback_delay_s: float = Field(
        default=2.0, ge=0, description="replay: how long after a request its label is sent"
    )
    client_id: str = "reviewstream-producers"
    log_level: str = "INFO"
