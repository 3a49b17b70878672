"""Settings of the local, no-Docker stack (``python -m deploy.local``).

Ports are not repeated here: the stack listens where the services are told to connect
(``RS_KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``MLFLOW_TRACKING_URI``), so one variable
moves both ends. A component whose address is not on this machine is not started.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import KafkaSettings
from runtime.database import DatabaseSettings

RULES = Path(__file__).resolve().parents[1] / "monitoring" / "rules.yml"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}  # noqa: S104 - names, not a bind
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_STACK_", frozen=True)

    state_dir: Path = Field(Path(".state"), description="data of Kafka, PostgreSQL and MLflow")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "reviewstream", description="downloaded Kafka jars"
    )
    kafka_controller_port: int = 9093
    kafka_sasl_port: int = Field(9094, description="the broker's SASL_PLAINTEXT listener")
    kafka_heap_mb: int = 512
    bootstrap_model: bool = Field(
        True,
        description="on a start with the services, train and promote the fast model when the "
        "registry serves none (deploy.local.bootstrap)",
    )
    mlflow_tracking_uri: str = Field(DEFAULT_TRACKING_URI, alias="MLFLOW_TRACKING_URI")
    # Monitoring (deploy/local/monitoring.py): Debian's Prometheus and Alertmanager.
    monitoring: bool = Field(True, description="run Prometheus and Alertmanager with the stack")
    prometheus_url: HttpUrl = Field(HttpUrl("http://127.0.0.1:9090"), description="Prometheus")
    # Not Alertmanager's usual 9093: that is the local Kafka controller's port.
    alertmanager_url: HttpUrl = Field(HttpUrl("http://127.0.0.1:9095"), description="Alertmanager")
    scrape_interval_s: float = Field(15.0, gt=0, description="how often every /metrics is read")
    evaluation_interval_s: float = Field(15.0, gt=0, description="how often the rules run")
    alert_group_wait_s: float = Field(
        30.0, ge=0, description="Alertmanager waits this long to gather a new group's alerts"
    )
    alert_group_interval_s: float = Field(
        300.0, gt=0, description="then notifies a group's changes at most this often"
    )
    alert_repeat_interval_s: float = Field(
        4 * 3600.0, gt=0, description="and repeats a firing group this often"
    )
    alert_rules: list[Path] = Field(
        default_factory=lambda: [RULES], description="rule files Prometheus loads"
    )
    scrape_targets: dict[str, list[str]] | None = Field(
        None,
        description='{"job": ["host:port", ...]} scraped instead of the services\' own '
        "settings (tests)",
    )
    alert_webhook_url: str | None = Field(
        None,
        description="where Alertmanager posts alerts; default the gateway's /v1/admin/alerts",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    @property
    def kafka_address(self) -> tuple[str, int]:
        first = self.kafka.bootstrap_servers.split(",")[0]
        host, _, port = first.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def database_address(self) -> tuple[str, int]:
        url = urlsplit(self.database.url.get_secret_value())
        return url.hostname or "127.0.0.1", url.port or 5432

    @property
    def mlflow_address(self) -> tuple[str, int]:
        url = urlsplit(self.mlflow_tracking_uri)
        return url.hostname or "127.0.0.1", url.port or 80

    @property
    def prometheus_address(self) -> tuple[str, int]:
        return self.prometheus_url.host or "127.0.0.1", self.prometheus_url.port or 80

    @property
    def alertmanager_address(self) -> tuple[str, int]:
        return self.alertmanager_url.host or "127.0.0.1", self.alertmanager_url.port or 80

    @property
    def runs_prometheus(self) -> bool:
        return self.monitoring and self.prometheus_address[0] in LOCAL_HOSTS

    @property
    def runs_alertmanager(self) -> bool:
        return self.monitoring and self.alertmanager_address[0] in LOCAL_HOSTS

    @property
    def runs_kafka(self) -> bool:
        return self.kafka_address[0] in LOCAL_HOSTS

    @property
    def runs_postgres(self) -> bool:
        return self.database_address[0] in LOCAL_HOSTS

    @property
    def runs_mlflow(self) -> bool:
        return self.mlflow_tracking_uri.startswith("http") and self.mlflow_address[0] in LOCAL_HOSTS
