"""Settings of export, gates and promotion (``RS_EXPORT_*``), read once by the commands."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import KafkaSettings

# The same defaults as inference.registry's, repeated so that settings import without MLflow
# (training runs on machines that have torch but no MLflow client; tests check they agree).
DEFAULT_MODEL_NAME = "reviewstream-sentiment"
DEFAULT_ALIAS = "production"
CHALLENGER_ALIAS = "challenger"
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_EXPORT_", frozen=True, populate_by_name=True)

    mlflow_tracking_uri: str = Field(
        DEFAULT_TRACKING_URI,
        alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking server and model registry",
    )
    model_name: str = Field(DEFAULT_MODEL_NAME, description="registered model name")
    alias: str = Field(DEFAULT_ALIAS, description="the serving alias that promotion moves")
    challenger_alias: str = Field(
        CHALLENGER_ALIAS, description="the alias that shadow workers follow (export shadow)"
    )
    shadow_min_labelled: int = Field(
        0, ge=0, description="promotion needs this many labelled reviews in shadow (0: none)"
    )
    shadow_min_s: float = Field(
        0.0, ge=0, description="promotion needs this long a shadow, in seconds (0: none)"
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "RS_DATABASE_URL", "database_url"),
        description="the statistics database: read by the live replay gate (skipped when unset)"
        " and when a shadow requirement is set",
    )
    accuracy_floor: float = Field(0.95, description="gate: least test accuracy of the ONNX model")
    production_margin: float = Field(
        0.005, description="gate: how much worse than production on the same test set is allowed"
    )
    parity_tolerance: float = Field(
        1e-4, description="gate: largest |ONNX - torch| probability on the reference set"
    )
    latency_budget_ms: float = Field(
        50.0, description="gate: mean ONNX Runtime time per review (1 thread, batches of 32)"
    )
    latency_sample: int = Field(256, description="reviews timed for the latency gate")
    behaviour_min_pass_rate: float = Field(
        0.9, description="gate: share of the behavioural suite's cases that must pass"
    )
    reference_size: int = Field(16, description="validation reviews in the bundle's reference set")
    # What a version learned (export.insights): explanations of held-out reviews, logged to the
    # run. Occlusion runs the encoder once per word, so the accurate family explains fewer.
    insight_reviews_fast: int = Field(500, description="test reviews explained (fast family)")
    insight_reviews_accurate: int = Field(
        32, description="test reviews explained (accurate family: occlusion is slow on a CPU)"
    )
    insight_min_reviews: int = Field(5, description="reviews a word must occur in to be ranked")
    insight_top: int = Field(15, description="words shown on each side")
    # The live replay gate: labels from the statistics database, texts from the requests topic.
    replay_reviews: int = Field(1000, ge=1, description="most recent labelled live reviews scored")
    replay_min_reviews: int = Field(
        50, ge=1, description="fewer labelled live reviews than this: the gate cannot judge"
    )
    replay_margin: float = Field(
        0.01, ge=0, description="how much worse than production on them the candidate may be"
    )
    replay_scan: int = Field(
        200_000, ge=1, description="requests read from the topic's tail to find their texts"
    )
    reproduce_tolerance: float = Field(
        0.005,
        ge=0,
        description="lineage --reproduce: largest difference of a figure where the run was not"
        " the fast family on a CPU (which must reproduce exactly)",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    def insight_reviews(self, family: str) -> int:
        return self.insight_reviews_accurate if family == "accurate" else self.insight_reviews_fast
