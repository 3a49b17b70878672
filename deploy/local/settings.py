"""Settings of the local, no-Docker stack (``python -m deploy.local``).

Ports are not repeated here: the stack listens where the services are told to connect
(``RS_KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``MLFLOW_TRACKING_URI``), so one variable
moves both ends. A component whose address is not on this machine is not started.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import KafkaSettings
from runtime.database import DatabaseSettings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}  # noqa: S104 - names, not a bind
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_STACK_", frozen=True)

    state_dir: Path = Field(Path(".state"), description="data of Kafka, PostgreSQL and MLflow")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "reviewstream", description="downloaded Kafka jars"
    )
    kafka_controller_port: int = 9093
    kafka_heap_mb: int = 512
    bootstrap_model: bool = Field(
        True,
        description="on a start with the services, train and promote the fast model when the "
        "registry serves none (deploy.local.bootstrap)",
    )
    mlflow_tracking_uri: str = Field(DEFAULT_TRACKING_URI, alias="MLFLOW_TRACKING_URI")
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
    def runs_kafka(self) -> bool:
        return self.kafka_address[0] in LOCAL_HOSTS

    @property
    def runs_postgres(self) -> bool:
        return self.database_address[0] in LOCAL_HOSTS

    @property
    def runs_mlflow(self) -> bool:
        return self.mlflow_tracking_uri.startswith("http") and self.mlflow_address[0] in LOCAL_HOSTS
