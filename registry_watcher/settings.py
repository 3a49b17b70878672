"""Settings of the registry watcher, read once in ``__main__`` (prefix ``RS_WATCHER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import KafkaSettings
from inference.registry import CHALLENGER_ALIAS, DEFAULT_ALIAS, DEFAULT_MODEL_NAME
from runtime.settings import CommaSeparated
from runtime.signing import SigningKey, TrustedKeys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_WATCHER_", frozen=True)

    host: str = Field("127.0.0.1", description="bind address of /healthz, /readyz and /metrics")
    port: int = Field(9103, ge=0, le=65535, description="their port; 0 picks a free one (logged)")
    poll_interval_s: float = Field(
        5.0, gt=0, description="how often to ask the registry (a webhook asks at once)"
    )
    webhook_secret_file: Path | None = Field(
        None,
        description="the shared secret of MLflow's registry webhook (POST /webhooks/mlflow, "
        "HMAC-signed); unset: webhooks off, polling only",
    )
    webhook_max_age_s: float = Field(
        300.0, gt=0, description="a webhook sent further from now than this is refused (replay)"
    )
    model_names: CommaSeparated = Field(
        default_factory=lambda: [DEFAULT_MODEL_NAME],
        description="registered models to watch, comma-separated",
    )
    # Beside the serving alias, never through its release path (registry_watcher.challengers).
    shadow_aliases: CommaSeparated = Field(
        default_factory=lambda: [CHALLENGER_ALIAS],
        description="challenger aliases announced for shadow workers, comma-separated "
        "(empty: none)",
    )
    alias: str = Field(DEFAULT_ALIAS, description="the serving alias that workers follow")
    verify_artifacts: bool = Field(
        True,
        description="download each version before shipping it to re-check its sha256 and "
        "reference outputs (the gates' tags are always checked)",
    )
    probation_s: float = Field(
        3600.0, ge=0, description="after shipping a version, how long an alert rolls it back"
    )
    rollback_on: CommaSeparated = Field(
        default_factory=lambda: ["LiveAccuracyDrop", "InferenceErrors", "FleetNotAcknowledging"],
        description="alert names that roll back a version on probation, comma-separated",
    )
    ack_deadline_s: float = Field(
        600.0,
        gt=0,
        description="live workers not serving a shipped version this long after: the "
        "FleetNotAcknowledging alert (a rollback during probation)",
    )
    mlflow_tracking_uri: str = Field("http://127.0.0.1:5000", alias="MLFLOW_TRACKING_URI")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    trusted_keys: TrustedKeys = Field(default_factory=TrustedKeys)
    signing_key: SigningKey = Field(default_factory=SigningKey)
