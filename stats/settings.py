"""Settings of the stats processor (prefix ``RS_STATS_``), read once at start-up; the
database is every part's (``runtime.database``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import KafkaSettings
from runtime.database import DatabaseSettings
from runtime.signing import TrustedKeys
from stats.drift import DriftSettings


class Settings(BaseSettings):
    """The stats processor (``python -m stats``)."""

    model_config = SettingsConfigDict(env_prefix="RS_STATS_", frozen=True)

    host: str = Field("127.0.0.1", description="address of /healthz, /readyz and /metrics")
    port: int = Field(9102, ge=1, le=65535, description="port of /healthz, /readyz and /metrics")
    group_id: str = Field(
        "reviewstream-stats", min_length=1, description="Kafka consumer group (the faust app id)"
    )
    batch_max: int = Field(2000, ge=1, description="most records written in one transaction")
    batch_within_s: float = Field(
        0.25, gt=0, description="longest wait to fill a batch before writing what is there"
    )
    commit_interval_s: float = Field(
        1.0, gt=0, description="how often acknowledged offsets are committed to Kafka"
    )
    session_timeout_s: float = Field(
        45.0,
        ge=6,
        description="how soon the group reassigns the partitions of a processor that died",
    )
    retry_max_backoff_s: float = Field(
        5.0, gt=0, description="ceiling of the exponential backoff while PostgreSQL is away"
    )
    unmatched_retention_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="how long feedback waits for its prediction before it is purged",
    )
    purge_interval_s: float = Field(300.0, gt=0, description="how often the purge runs")
    drain_timeout_s: float = Field(
        15.0, ge=0, description="on SIGTERM, how long the batch in flight may take to finish"
    )
    db_pool_max: int = Field(4, ge=2, description="most PostgreSQL connections")
    migrate: bool = Field(
        True,
        description="apply stats/migrations at start-up (idempotent); false: wait until another "
        "part has (the writer role the processor runs as may not migrate)",
    )
    data_dir: Path = Field(
        Path(".state/stats"), description="faust's data folder (no tables, so it stays empty)"
    )
    drift_enabled: bool = Field(
        True, description="run the drift monitor (off: predictions are stored, not watched)"
    )
    drift_window: int = Field(300, ge=20, description="predictions per drift window")
    drift_step: int = Field(25, ge=1, description="a drift check every this many predictions")
    drift_alpha: float = Field(
        1e-4, gt=0, lt=1, description="p-value below which a window differs (chi-square)"
    )
    drift_min_score: float = Field(
        0.15, ge=0, description="PSI from which a difference is large enough to alarm"
    )
    accuracy_window: int = Field(200, ge=10, description="labelled predictions per check")
    accuracy_margin: float = Field(
        0.03, ge=0, le=1, description="how far below the reference accuracy may live go"
    )
    accuracy_min_labelled: int = Field(
        50, ge=1, description="labelled predictions needed before live accuracy may alarm"
    )
    drift_retention_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="how long drift checks are kept in drift_checks"
    )
    accuracy_interval_s: float = Field(10.0, gt=0, description="how often accuracy is checked")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    trusted_keys: TrustedKeys = Field(default_factory=TrustedKeys)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    def drift(self) -> DriftSettings:
        return DriftSettings(
            window=self.drift_window,
            step=self.drift_step,
            alpha=self.drift_alpha,
            min_score=self.drift_min_score,
            accuracy_window=self.accuracy_window,
            accuracy_margin=self.accuracy_margin,
            accuracy_min_labelled=self.accuracy_min_labelled,
        )
