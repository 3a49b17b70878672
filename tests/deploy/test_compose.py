"""deploy/compose/compose.yaml, as ``docker compose config`` (the real CLI plugin) reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from deploy.healthcheck import GATEWAY_API
from tests.deployrender import COMPOSE_SECRETS, DEPLOYED, compose_config, run_compose

INFRA = ("kafka", "postgres", "mlflow")


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose_config()["services"]
    assert name in services, f"compose has no service {name!r}"
    return services[name]


def test_compose_config_accepts_the_file() -> None:
    result = run_compose("config", "--quiet")
    assert result.returncode == 0, result.stderr
    names = set(compose_config()["services"])
    assert names == {*INFRA, "init-job", "mlflow-webhook", *(c for c, _ in DEPLOYED.values())}


def test_mlflow_posts_alias_moves_to_the_watcher_with_a_shared_secret() -> None:
    job = service("mlflow-webhook")
    assert job["environment"]["MLFLOW_TRACKING_USERNAME"] == "admin"  # only it may
    assert "http://registry-watcher:9103/webhooks/mlflow" in job["command"]
    watcher = service("registry-watcher")
    secret = watcher["environment"]["RS_WATCHER_WEBHOOK_SECRET_FILE"]
    mounted = {s["target"]: s["source"] for s in watcher["secrets"]}
    assert mounted[Path(secret).name] == "webhook_secret"
    assert {"source": "webhook_secret", "target": "webhook_secret"} in [
        {k: s[k] for k in ("source", "target")} for s in job["secrets"]
    ]
    server = service("mlflow")
    assert "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY" in " ".join(server["command"])
    assert server["environment"]["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"] == "http,https"


def test_training_profile_is_valid_and_not_started_by_default() -> None:
    config = compose_config("training")
    training = config["services"]["training"]
    assert training["profiles"] == ["training"]
    # The image's own reference travels into the image and the run's environment.
    assert training["environment"]["RS_TRAIN_IMAGE"] == training["image"]
    assert training["build"]["args"]["RS_TRAIN_IMAGE"] == training["image"]
    assert training["build"]["target"] == "training"


def test_a_broken_file_is_rejected(tmp_path: Path) -> None:
    """The check has teeth: compose refuses an unknown depends_on condition."""
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        "services:\n  a:\n    image: busybox\n    depends_on:\n"
        "      b: {condition: service_sleepy}\n  b:\n    image: busybox\n"
    )
    result = run_compose("config", "--quiet", file=broken)
    assert result.returncode != 0


def test_official_images_pinned_by_exact_tag() -> None:
    assert service("kafka")["image"] == "apache/kafka:4.1.1"
    assert service("postgres")["image"] == "postgres:18.1-bookworm"
    for name in ("mlflow", "init-job", *(c for c, _ in DEPLOYED.values())):
        assert "build" in service(name), f"{name} is built from deploy/docker/Dockerfile"
        assert service(name)["build"]["dockerfile"] == "deploy/docker/Dockerfile"


def test_kafka_is_kraft_without_topic_auto_creation() -> None:
    env = service("kafka")["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "CLUSTER_ID" in env
    assert any(v["target"] == "/var/lib/kafka/data" for v in service("kafka")["volumes"])


def test_mlflow_uses_postgres_and_an_artifact_volume() -> None:
    mlflow = service("mlflow")
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    volume = next(v for v in mlflow["volumes"] if v["type"] == "volume")
    assert volume["target"] == mlflow["environment"]["MLFLOW_ARTIFACTS_DESTINATION"]
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize(
    ("name", "user"),
    [("workers", "worker"), ("registry-watcher", "watcher"), ("training", "trainer")],
)
def test_mlflow_clients_sign_in_with_a_password_from_their_own_secret(name: str, user: str) -> None:
    client = compose_config("training")["services"][name]
    assert client["environment"]["MLFLOW_TRACKING_USERNAME"] == user
    assert client["environment"]["MLFLOW_TRACKING_PASSWORD_FILE"] == "/run/secrets/mlflow_password"
    assert "MLFLOW_TRACKING_PASSWORD" not in client["environment"]
    mlflow = [s for s in client["secrets"] if s["source"].startswith("mlflow_")]
    assert mlflow == [{"source": f"mlflow_{user}", "target": "mlflow_password"}]


def test_mlflow_requires_sign_in_with_users_from_secret_files() -> None:
    mlflow = service("mlflow")
    command = " ".join(mlflow["command"])
    assert "python -m deploy.mlflow_access provision --passwords /run/secrets" in command
    assert "mlflow server --app-name basic-auth" in command
    assert {s["target"] for s in mlflow["secrets"]} == {
        "admin", "people", "worker", "trainer", "release", "watcher", "flask_secret_key",
        "webhook_encryption_key",
    }  # fmt: skip
    secrets = compose_config()["secrets"]
    for source in (s["source"] for s in mlflow["secrets"]):
        assert "file" in secrets[source], "a password comes from a file, never the compose file"


def test_named_volumes_hold_every_state() -> None:
    volumes = set(compose_config()["volumes"])
    assert volumes == {"kafka-data", "postgres-data", "mlflow-artifacts", "stats-data"}
    for name in ("kafka", "postgres", "mlflow", "stats"):
        mounted = {v["source"] for v in service(name)["volumes"] if v["type"] == "volume"}
        assert mounted & volumes, f"{name} keeps its state on a named volume"


def test_infrastructure_has_healthchecks() -> None:
    for name in INFRA:
        check = service(name)["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"}
        assert not check.get("disable", False)


def test_init_job_creates_topics_and_roles_then_migrates_once() -> None:
    job = service("init-job")
    assert job["restart"] == "no"
    assert job["command"] == [
        "sh",
        "-c",
        "python -m deploy.topics && python -m stats.roles && python -m stats.migrate",
    ]
    for dependency in ("kafka", "postgres"):
        assert job["depends_on"][dependency]["condition"] == "service_healthy"


@pytest.mark.parametrize("package", sorted(DEPLOYED))
def test_services_wait_for_the_init_job_and_their_dependencies(package: str) -> None:
    depends = service(DEPLOYED[package][0])["depends_on"]
    assert depends["init-job"]["condition"] == "service_completed_successfully"
    assert depends["kafka"]["condition"] == "service_healthy"
    if package in {"workers", "registry_watcher"}:
        assert depends["mlflow"]["condition"] == "service_healthy"
    if package in {"gateway", "stats"}:
        assert depends["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("package", sorted(DEPLOYED))
def test_services_are_hardened(package: str) -> None:
    svc = service(DEPLOYED[package][0])
    assert svc["read_only"] is True
    assert svc["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in svc["security_opt"]
    # Writable scratch space for the non-root user despite the read-only root.
    assert any(t.startswith("/tmp") for t in svc["tmpfs"])  # noqa: S108 - a mount target


def test_workers_scale_with_docker_compose_scale() -> None:
    workers = service("workers")
    assert "container_name" not in workers, "a fixed name makes --scale fail"
    assert "ports" not in workers, "a fixed host port makes --scale fail"
    assert workers["deploy"]["replicas"] >= 1
    # Each replica names itself (hostname) unless told otherwise.
    assert workers["environment"]["RS_WORKER_ID"] is None


def test_every_published_port_is_on_loopback_only() -> None:
    published = {n: s["ports"] for n, s in compose_config()["services"].items() if "ports" in s}
    assert "gateway" in published
    for name, ports in published.items():
        assert {p.get("host_ip") for p in ports} == {"127.0.0.1"}, name


@pytest.mark.parametrize(
    ("package", "role"), [("stats", "reviewstream_writer"), ("gateway", "reviewstream_reader")]
)
def test_each_service_connects_to_postgres_as_its_own_role(package: str, role: str) -> None:
    svc = service(DEPLOYED[package][0])
    url = urlsplit(svc["environment"]["DATABASE_URL"])
    assert url.username == role
    assert url.password == COMPOSE_SECRETS[f"RS_DB_{role.rsplit('_', 1)[1].upper()}_PASSWORD"]
    # Only the owner migrates; the writer waits for the init job.
    assert svc["environment"].get("RS_STATS_MIGRATE", "false") == "false"
    for name in ("workers", "registry-watcher"):
        assert "DATABASE_URL" not in service(name)["environment"]


def test_init_job_makes_the_roles_as_the_owner() -> None:
    env = service("init-job")["environment"]
    assert urlsplit(env["DATABASE_URL"]).password == COMPOSE_SECRETS["RS_POSTGRES_PASSWORD"]
    assert env["RS_DB_WRITER_PASSWORD"] == COMPOSE_SECRETS["RS_DB_WRITER_PASSWORD"]
    assert env["RS_DB_READER_PASSWORD"] == COMPOSE_SECRETS["RS_DB_READER_PASSWORD"]


def test_gateway_is_published_with_api_keys_from_a_secret() -> None:
    gateway = service("gateway")
    # The API only: the operations port (probes, metrics) stays inside the network.
    assert [p["target"] for p in gateway["ports"]] == [GATEWAY_API.default_port]
    assert gateway["environment"]["RS_GATEWAY_OPEN_MODE"] == "false"
    assert gateway["environment"]["RS_GATEWAY_API_KEYS_FILE"] == "/run/secrets/api_keys"
    assert [s["source"] for s in gateway["secrets"]] == ["api_keys", "models_verify_key"]
    assert "api_keys" in compose_config()["secrets"]
    # Unique per replica: never one fixed id for every gateway.
    assert gateway["environment"]["RS_GATEWAY_INSTANCE_ID"] is None
