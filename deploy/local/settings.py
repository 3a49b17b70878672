"""Settings of the local, no-Docker stack (``python -m deploy.local``).

Ports are not repeated here: the stack listens where the services are told to connect
(``RS_KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``MLFLOW_TRACKING_URI``), so one variable
moves both ends. A component whose address is not on this machine is not started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, HttpUrl, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topics import KafkaSettings
from runtime.database import DatabaseSettings

RULES = Path(__file__).resolve().parents[1] / "monitoring" / "rules.yml"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}  # noqa: S104 - names, not a bind
DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node of the local cluster (a combined broker and controller)."""

    id: int
    host: str
    port: int  # the plaintext loopback listener
    controller_port: int
    sasl_port: int


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RS_STACK_", frozen=True)

    state_dir: Path = Field(Path(".state"), description="data of Kafka, PostgreSQL and MLflow")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "reviewstream", description="downloaded Kafka jars"
    )
    kafka_controller_port: int = 9093
    kafka_sasl_port: int = Field(9094, description="the broker's SASL_PLAINTEXT listener")
    kafka_heap_mb: int = 512
    kafka_brokers: int = Field(
        1,
        description="KRaft nodes, each a broker and a controller; 3: a 3-voter quorum, topics "
        "with replication factor 3 and min.insync.replicas 2, RS_KAFKA_BOOTSTRAP_SERVERS "
        "listing the three plaintext addresses",
    )
    kafka_peer_controller_ports: list[int] = Field(
        [9193, 9293], description="with 3 brokers: the controller ports of nodes 2 and 3"
    )
    kafka_peer_sasl_ports: list[int] = Field(
        [9194, 9294], description="with 3 brokers: the SASL_PLAINTEXT ports of nodes 2 and 3"
    )
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

    @model_validator(mode="after")
    def _three_addresses_for_three_brokers(self) -> Self:
        if self.kafka_brokers not in (1, 3):
            raise ValueError("RS_STACK_KAFKA_BROKERS is 1 or 3 (a quorum of three voters)")
        peers = self.kafka_brokers - 1
        if len(self.kafka_addresses) < self.kafka_brokers:
            raise ValueError(
                f"RS_STACK_KAFKA_BROKERS={self.kafka_brokers} needs RS_KAFKA_BOOTSTRAP_SERVERS "
                f"to list {self.kafka_brokers} addresses, one per broker (e.g. 127.0.0.1:9092,"
                "127.0.0.1:9192,127.0.0.1:9292)"
            )
        for name in ("kafka_peer_controller_ports", "kafka_peer_sasl_ports"):
            if len(getattr(self, name)) < peers:
                raise ValueError(f"RS_STACK_{name.upper()} needs {peers} ports")
        return self

    @property
    def kafka_addresses(self) -> list[tuple[str, int]]:
        """The (host, port) of every address in RS_KAFKA_BOOTSTRAP_SERVERS."""
        addresses = []
        for server in self.kafka.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            addresses.append((host.strip("[]"), int(port)))
        return addresses

    @property
    def kafka_address(self) -> tuple[str, int]:
        return self.kafka_addresses[0]

    @property
    def kafka_nodes(self) -> list[KafkaNode]:
        """The nodes the stack runs: node 1 on the first bootstrap address and the controller
        and SASL ports; nodes 2 and 3 (with 3 brokers) on the next addresses and peer ports."""
        controllers = [self.kafka_controller_port, *self.kafka_peer_controller_ports]
        sasl = [self.kafka_sasl_port, *self.kafka_peer_sasl_ports]
        return [
            KafkaNode(i + 1, host, port, controllers[i], sasl[i])
            for i, (host, port) in enumerate(self.kafka_addresses[: self.kafka_brokers])
        ]

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
