"""Start the project's own local stack (``python -m deploy.local``) as a child, on free ports.

Used by the tests and the benchmarks: each session gets its own ports and state folder, so
several checkouts, or a run beside ``make up``, never clash. Readiness is checked with real
clients, never with a sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import KafkaSettings
from deploy.local.database_roles import role_passwords, url_as
from deploy.mlflow_access import ADMIN
from runtime.mlflow_credentials import basic_auth_header

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStack:
    state_dir: Path
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    kafka_sasl_port: int = field(default_factory=free_port)
    postgres_port: int = field(default_factory=free_port)
    mlflow_port: int = field(default_factory=free_port)
    # 3: three KRaft nodes (deploy.local.kafka); nodes 2 and 3 listen on the peer ports.
    kafka_brokers: int = 1
    kafka_peer_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    controller_peer_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    kafka_sasl_peer_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    process: subprocess.Popen[bytes] | None = None
    # The tests' MLflow user: the admin, who may do anything the services and people do.
    mlflow_user: str = ADMIN

    def mlflow_password_file(self, user: str) -> Path:
        """Where the stack keeps ``user``'s MLflow password (deploy.local.mlflow_server)."""
        return self.state_dir / "mlflow" / "credentials" / user

    def mlflow_credentials(self, user: str) -> dict[str, str]:
        """MLflow's client variables for ``user``; only the user name before the start."""
        path = self.mlflow_password_file(user)
        env = {"MLFLOW_TRACKING_USERNAME": user}
        if path.exists():
            env["MLFLOW_TRACKING_PASSWORD"] = path.read_text().strip()
        return env

    @property
    def env(self) -> dict[str, str]:
        """What a client of this stack needs; signed in to MLflow as ``mlflow_user`` once the
        stack has made its password file (at start)."""
        return {
            **self.mlflow_credentials(self.mlflow_user),
            "RS_STACK_STATE_DIR": str(self.state_dir),
            "RS_STACK_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "RS_STACK_KAFKA_SASL_PORT": str(self.kafka_sasl_port),
            "RS_STACK_KAFKA_HEAP_MB": "384",
            # Always set: a stack started inside a test never inherits the session stack's.
            "RS_STACK_KAFKA_BROKERS": str(self.kafka_brokers),
            "RS_STACK_KAFKA_PEER_CONTROLLER_PORTS": json.dumps(self.controller_peer_ports),
            "RS_STACK_KAFKA_PEER_SASL_PORTS": json.dumps(self.kafka_sasl_peer_ports),
            "RS_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "DATABASE_URL": self.database_url,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            # Prometheus and Alertmanager only for the tests that ask (LocalMonitoring).
            "RS_STACK_MONITORING": "false",
        }

    @property
    def bootstrap_servers(self) -> str:
        """The plaintext listener of every node."""
        ports = [self.kafka_port, *self.kafka_peer_ports][: self.kafka_brokers]
        return ",".join(f"127.0.0.1:{port}" for port in ports)

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The authenticated listener: SCRAM-SHA-512, ACLs of ``contracts.kafka_access``."""
        ports = [self.kafka_sasl_port, *self.kafka_sasl_peer_ports][: self.kafka_brokers]
        return ",".join(f"127.0.0.1:{port}" for port in ports)

    def password_file(self, principal: str) -> Path:
        """Where the stack keeps ``principal``'s SCRAM password (deploy.local.kafka_users)."""
        return self.state_dir / "kafka" / "users" / principal

    def kafka_as(self, principal: str, kafka: KafkaSettings | None = None) -> KafkaSettings:
        """``kafka`` (default: the stack's topics) on the SASL listener as ``principal``."""
        return (kafka or KafkaSettings()).model_copy(
            update={
                "bootstrap_servers": self.sasl_bootstrap_servers,
                "security_protocol": "SASL_PLAINTEXT",
                "username": principal,
                "password_file": self.password_file(principal),
            }
        )

    def kafka_env(self, principal: str) -> dict[str, str]:
        """The environment of a service process that connects as ``principal``."""
        return {
            "RS_KAFKA_BOOTSTRAP_SERVERS": self.sasl_bootstrap_servers,
            "RS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "RS_KAFKA_USERNAME": principal,
            "RS_KAFKA_PASSWORD_FILE": str(self.password_file(principal)),
        }

    @property
    def database_url(self) -> str:
        return f"postgresql://reviewstream:reviewstream@127.0.0.1:{self.postgres_port}/reviewstream"

    def database_url_as(self, role: str, url: str | None = None) -> str:
        """``url`` (default :attr:`database_url`, the owner's) as the login role ``role`` of
        ``stats.roles``, with the password the stack made for it."""
        return url_as(url or self.database_url, role, role_passwords(self.state_dir)[role])

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def start(self, timeout_s: float = 240) -> None:
        self.state_dir.parent.mkdir(parents=True, exist_ok=True)
        with (self.state_dir.parent / f"{self.state_dir.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deploy.local", "--infra-only"],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        asyncio.run(self._wait_ready(deadline))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    async def _wait_ready(self, deadline: float) -> None:
        expected = {spec.name for spec in KafkaSettings().topic_specs()}
        for check in (self._kafka_ready, self._postgres_ready, self._mlflow_ready):
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"the stack exited early; see {self.state_dir}.log")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the stack was not ready in time; see {self.state_dir}.log")
                try:
                    if await check(expected):
                        break
                except Exception:  # noqa: S110 - not up yet: try again until the deadline
                    pass
                await asyncio.sleep(0.5)

    async def _kafka_ready(self, expected: set[str]) -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            return expected <= set(await admin.list_topics())
        finally:
            await admin.close()

    async def _postgres_ready(self, expected: set[str]) -> bool:
        conn = await asyncpg.connect(self.database_url, timeout=5)
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM schema_migrations"))
        finally:
            await conn.close()

    async def _mlflow_ready(self, expected: set[str]) -> bool:
        def get() -> bool:
            # Signed in: ready means its users exist too. Always http://host:port, built here.
            url = f"{self.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1"
            request = urllib.request.Request(  # noqa: S310
                url, headers=basic_auth_header(self.mlflow_credentials(self.mlflow_user))
            )
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return bool(response.status == 200)

        return await asyncio.to_thread(get)


@dataclass
class LocalMonitoring:
    """The local stack's Prometheus and Alertmanager (``deploy.local.prometheus`` and
    ``deploy.local.alertmanager``) on free ports, started on demand beside a LocalStack.

    ``settings`` are more ``RS_STACK_*`` variables: the tests' short intervals, the targets to
    scrape, the webhook to call. Readiness is each server's ``/-/ready``.
    """

    state_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    prometheus_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "RS_STACK_STATE_DIR": str(self.state_dir),
            "RS_STACK_MONITORING": "true",
            "RS_STACK_PROMETHEUS_URL": self.prometheus_url,
            "RS_STACK_ALERTMANAGER_URL": self.alertmanager_url,
            **self.settings,
        }

    def start(self, timeout_s: float = 60) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for module in ("deploy.local.prometheus", "deploy.local.alertmanager"):
            name = module.rpartition(".")[2]
            with (self.state_dir.parent / f"{self.state_dir.name}-{name}.log").open("ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module],
                        cwd=ROOT,
                        env={**os.environ, **self.env},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + timeout_s
        for url in (self.prometheus_url, self.alertmanager_url):
            while not self._ready(f"{url}/-/ready"):
                if any(p.poll() is not None for p in self.processes):
                    raise RuntimeError(f"monitoring exited early; see {self.state_dir}-*.log")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} was not ready in time")
                time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - built here
                return bool(response.status == 200)
        except OSError:
            return False
