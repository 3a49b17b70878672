"""What the benchmark runs against: Kafka, PostgreSQL and MLflow on free ports, the model in the
registry, and the real services (``python -m workers``, ``gateway``, ``registry_watcher``) as
subprocesses whose readiness is polled and whose peak memory is read from the kernel.

The stack is the one the tests start (``deploy.local.launcher``); the default model is a
synthetic bundle (``inference.synthetic``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil  # type: ignore[import-untyped]
from aiokafka import AIOKafkaProducer
from mlflow import MlflowClient

from contracts import KafkaSettings, encode
from deploy.local.launcher import LocalStack, free_port
from deploy.local.processes import ServiceProcess, kafka_env
from deploy.mlflow_access import ensure_secret_file
from deploy.mlflow_webhook import ensure_webhook, webhooks
from deploy.topics import ensure_topics
from export.gates import Gate
from export.registry import record_gates
from inference import Bundle, load_bundle
from inference.registry import register_bundle, serving_version
from inference.synthetic import make_fast_bundle

__all__ = ["BenchStack", "Service", "free_port", "make_bundles", "peak_rss_mib", "workdir"]

FAST_BUCKETS = 2**18


def make_bundles(work: Path, bundle_dir: Path | None) -> tuple[Bundle, Bundle, str]:
    """Two versions of the same model (for the hot reload) and a description of it."""
    if bundle_dir is not None:
        bundle = load_bundle(bundle_dir)
        return bundle, bundle, f"trained bundle {bundle_dir} (family {bundle.family})"
    first = make_fast_bundle(work / "bundle-1", seed=7, buckets=FAST_BUCKETS)
    second = make_fast_bundle(work / "bundle-2", seed=8, buckets=FAST_BUCKETS)
    return first, second, "make_fast_bundle: the fast model's graph, 2**18 buckets, random weights"


def peak_rss_mib(pid: int) -> float:
    """The kernel's high-water mark of the process's resident memory (VmHWM), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except psutil.Error:
        return float("nan")


def tree_peak_rss_mib(pid: int) -> float:
    """VmHWM of a process plus its descendants' (``mlflow models serve`` forks its server)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return float("nan")
    return peak_rss_mib(pid) + sum(peak_rss_mib(c.pid) for c in children)


class Service(ServiceProcess):
    """A service of the benchmark, on a known port, with its peak memory read from the kernel."""

    def peak_rss_mib(self) -> float:
        assert self.process is not None
        return peak_rss_mib(self.process.pid)


@dataclass
class BenchStack:
    """The stack and services of one benchmark run; everything stops on exit."""

    work: Path
    own_stack: bool = True
    kafka_brokers: int = 1  # 3: three KRaft nodes (the broker-kill scenario)
    model_name: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    services: list[Service] = field(default_factory=list)
    local: LocalStack | None = None
    env: dict[str, str] = field(default_factory=dict)
    kafka: KafkaSettings = field(init=False)
    versions: list[str] = field(default_factory=list)
    profile_dir: Path | None = None  # workers run under cProfile, one .prof file each

    async def start(self, bundles: tuple[Bundle, Bundle]) -> None:
        env = dict(os.environ)
        if self.own_stack:
            state = self.work / ("state" if self.kafka_brokers == 1 else "state-brokers")
            self.local = LocalStack(state_dir=state, kafka_brokers=self.kafka_brokers)
            await asyncio.to_thread(self.local.start, 420)
            env |= self.local.env
            # The run's own MLflow clients (registration, alias moves, mlflow serve) sign in to
            # its MLflow as the stack's admin, as the tests do.
            os.environ.update(self.local.mlflow_credentials(self.local.mlflow_user))
        prefix = self.model_name
        self.kafka = KafkaSettings().prefixed(
            prefix, bootstrap_servers=env.get("RS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        )
        await ensure_topics(self.kafka)
        self.env = env | {
            **kafka_env(self.kafka),
            "MLFLOW_TRACKING_URI": self.tracking_uri_of(env),
            "PYTHONUNBUFFERED": "1",
        }
        self.versions = await asyncio.to_thread(self._register, bundles)
        await self._announce()

    @staticmethod
    def tracking_uri_of(env: dict[str, str]) -> str:
        return env.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")

    @property
    def tracking_uri(self) -> str:
        return self.tracking_uri_of(self.env)

    @property
    def database_url(self) -> str:
        return self.env.get("DATABASE_URL", "")

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _register(self, bundles: tuple[Bundle, Bundle]) -> list[str]:
        """Both versions registered (a run each, as training does); the serving
        alias on the first."""
        client = self.client()
        experiment = client.create_experiment(self.model_name)
        versions = []
        for bundle in bundles:
            run_id = client.create_run(experiment).info.run_id
            version = register_bundle(
                client, run_id=run_id, bundle=bundle, model_name=self.model_name
            )
            # The watcher ships only a gated version; these are the benchmark's own models.
            record_gates(client, version, [Gate("benchmark", True, 1.0, 1.0, "benchmark model")])
            client.set_terminated(run_id)
            versions.append(str(version.version))
        self.move_alias(versions[0])
        return versions

    async def _announce(self) -> None:
        """Say on the models topic what the alias serves, as the registry watcher would (the
        gateway answers 503 no_model until a model is announced; the watcher runs only for the
        reload scenario)."""
        event = await asyncio.to_thread(
            serving_version, self.client(), self.model_name, "production"
        )
        assert event is not None, "the serving alias was just set"
        producer = AIOKafkaProducer(**self.kafka.client(), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                self.kafka.models_topic, encode(event), key=event.model_name.encode()
            )
        finally:
            await producer.stop()

    def move_alias(self, version: str) -> None:
        self.client().set_registered_model_alias(self.model_name, "production", version)

    def start_service(self, package: str, settings: dict[str, str]) -> Service:
        python_args: list[str] = []
        if package == "workers" and self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            profile = self.profile_dir / f"worker-{len(self.services)}.prof"
            python_args = ["-m", "cProfile", "-o", str(profile)]
        port = free_port()
        prefix = {"workers": "RS_WORKER_", "gateway": "RS_GATEWAY_"}.get(package, "RS_WATCHER_")
        service = Service(
            package,
            env=self.env | {f"{prefix}PORT": str(port)} | settings,
            log_path=self.work / f"{package}-{len(self.services)}.log",
            port=port,
            python_args=python_args,
        )
        service.start()
        self.services.append(service)
        return service

    def start_worker(self) -> Service:
        return self.start_service(
            "workers",
            {
                "RS_WORKER_MODEL_NAME": self.model_name,
                "RS_WORKER_GROUP_ID": self.model_name,
                "RS_WORKER_ID": f"worker-{sum(s.package == 'workers' for s in self.services)}",
            },
        )

    def start_gateway(self) -> Service:
        # Its operations port too: 9100 may be another stack's (two benchmarks at once).
        return self.start_service(
            "gateway", {"RS_GATEWAY_OPEN_MODE": "true", "RS_GATEWAY_OPS_PORT": str(free_port())}
        )

    def start_watcher(self, poll_interval_s: float | None, *, webhook: bool) -> Service:
        """The registry watcher (at its default poll interval unless one is given); with
        ``webhook``, MLflow posts this model's alias moves to it (deploy.mlflow_webhook)."""
        settings = {"RS_WATCHER_MODEL_NAMES": self.model_name}
        if poll_interval_s is not None:
            settings["RS_WATCHER_POLL_INTERVAL_S"] = str(poll_interval_s)
        secret = ensure_secret_file(self.work / "webhook_secret")
        if webhook:
            settings["RS_WATCHER_WEBHOOK_SECRET_FILE"] = str(secret)
        watcher = self.start_service("registry_watcher", settings)
        client, name = self.client(), f"{self.model_name}-watcher"
        if webhook:
            url = f"http://127.0.0.1:{watcher.port}/webhooks/mlflow"
            ensure_webhook(client, url=url, secret=secret.read_text().strip(), name=name)
        else:  # polling only: no delivery at all
            for hook in webhooks(client):
                if hook.name == name:
                    client.delete_webhook(hook.webhook_id)
        return watcher

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        if self.local is not None:
            self.local.stop()

    async def __aenter__(self) -> BenchStack:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="rs-bench-"))
