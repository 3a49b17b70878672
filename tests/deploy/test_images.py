"""deploy/docker/Dockerfile and its HEALTHCHECK helper (deploy/healthcheck.py).

No Docker engine here, so the Dockerfile is checked as text and against uv.lock; the health
check runs for real against a local HTTP server, as the container runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.healthcheck import ENDPOINTS, Endpoint, Unhealthy, check
from tests.deployrender import DOCKERFILE, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())

# image target -> (package it runs, the extra its environment is synced with)
SERVICE_TARGETS = {
    "worker": ("workers", "worker"),
    "registry-watcher": ("registry_watcher", "watcher"),
    "gateway": ("gateway", "gateway"),
    "stats": ("stats", "stats"),
}


@dataclass
class Stage:
    name: str
    base: str
    lines: list[str] = field(default_factory=list)

    def instructions(self, keyword: str) -> list[str]:
        return [line[len(keyword) + 1 :] for line in self.lines if line.startswith(keyword + " ")]


def stages() -> dict[str, Stage]:
    """The Dockerfile's stages, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if match := re.fullmatch(r"FROM (\S+) AS (\S+)", line):
            current = result[match[2]] = Stage(match[2], match[1])
        elif current is not None:
            current.lines.append(line)
    return result


def test_one_target_per_role() -> None:
    assert {"worker", "registry-watcher", "gateway", "stats", "mlflow", "training"} <= set(stages())


def test_base_image_pinned_by_exact_tag_and_no_unverified_digest() -> None:
    text = DOCKERFILE.read_text()
    (tag,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", tag), tag
    assert not re.search(r"sha256:[0-9a-f]{64}", text), "a digest nobody here could verify"
    assert {s.base for s in stages().values()} <= {"${PYTHON_IMAGE}", *stages()}
    (uv,) = re.findall(r"^ARG UV_VERSION=(\S+)$", text, re.MULTILINE)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^UV_VERSION := {re.escape(uv)}$", makefile, re.MULTILINE)


def test_environments_come_from_the_lock_one_extra_per_role() -> None:
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    synced = {}
    for stage in stages().values():
        for run in stage.instructions("RUN"):
            if "uv sync" in run:
                assert "--frozen" in run, run
                assert "--no-dev" in run, run
                (extra,) = re.findall(r"--extra (\S+)", run)
                assert extra in extras
                synced[stage.name] = extra
    for target, (_, extra) in SERVICE_TARGETS.items():
        (source,) = [
            line.split()[0].removeprefix("--from=")
            for line in stages()[target].instructions("COPY")
            if line.endswith("/app/.venv /app/.venv")
        ]
        assert synced[source] == extra, target
    assert "training" in synced.values()
    assert "mlflow-server" in synced.values()


def closure(extra: str) -> set[str]:
    """Every locked package installed by `uv sync --no-dev --extra EXTRA`."""
    packages = {p["name"]: p for p in LOCK["package"]}
    root = packages["reviewstream"]
    todo = [(d["name"], tuple(d.get("extra", ()))) for d in root["dependencies"]]
    todo += [(d["name"], tuple(d.get("extra", ()))) for d in root["optional-dependencies"][extra]]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        package = packages[name]
        deps = list(package.get("dependencies", []))
        for option in wanted:
            deps += package.get("optional-dependencies", {}).get(option, [])
        todo += [(d["name"], tuple(d.get("extra", ()))) for d in deps]
    return {name for name, _ in seen}


def test_service_images_have_no_torch_and_training_has_it() -> None:
    for target, (_, extra) in SERVICE_TARGETS.items():
        assert "torch" not in closure(extra), f"{target} image would pull torch"
    assert "onnxruntime" in closure("worker")
    # a worker reads MLflow over its REST API: its image has no MLflow (~116 MiB per process)
    assert not {"mlflow", "mlflow-skinny", "pandas"} & closure("worker")
    assert "mlflow-skinny" in closure("watcher")
    assert "torch" in closure("training")
    assert "psycopg2-binary" in closure("mlflow-server")


def test_every_project_package_is_copied() -> None:
    packages = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copies = [c for c in stages()["source"].instructions("COPY") if not c.startswith("--from=")]
    assert sorted(copies) == sorted(f"{p} /app/src/{p}" for p in packages)


@pytest.mark.parametrize("target", sorted(SERVICE_TARGETS))
def test_service_images_run_unprivileged_with_real_health_checks(target: str) -> None:
    stage = stages()[target]
    package = SERVICE_TARGETS[target][0]
    endpoint = ENDPOINTS[package]
    assert stage.instructions("USER") == ["10001:10001"]
    assert stage.instructions("CMD") == [f'["python", "-m", "{package}"]']
    (health,) = stage.instructions("HEALTHCHECK")
    assert f'"deploy.healthcheck", "{package}", "/healthz"]' in health
    (env,) = stage.instructions("ENV")
    assert f"{endpoint.host_env}=0.0.0.0" in env.split()
    assert f"{endpoint.port_env}={endpoint.default_port}" in env.split()
    (exposed,) = stage.instructions("EXPOSE")
    assert str(endpoint.default_port) in exposed.split()


def test_base_user_is_the_numeric_non_root_one() -> None:
    base = " ".join(stages()["base"].instructions("RUN"))
    assert "--uid 10001" in base
    assert "--gid 10001" in base
    for name in ("mlflow", "training"):
        assert stages()[name].instructions("USER") == ["10001:10001"]


def test_training_image_records_its_own_reference() -> None:
    stage = stages()["training"]
    assert any(a.startswith("RS_TRAIN_IMAGE=") for a in stage.instructions("ARG"))
    assert "RS_TRAIN_IMAGE=${RS_TRAIN_IMAGE}" in " ".join(stage.instructions("ENV"))


def test_training_image_holds_the_lock_file_that_retrain_fingerprints() -> None:
    """``training.settings.ROOT`` is /app/src in the image: the lock must lie there."""
    assert "uv.lock /app/src/uv.lock" in stages()["training"].instructions("COPY")


def test_dockerignore_keeps_state_secrets_and_environments_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".tools", ".state", "tests", "deploy/compose"} <= ignored


# --- deploy.healthcheck, for real --------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/healthz": 200, "/readyz": 503}.get(self.path, 404)
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def run_check(package: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.healthcheck", package, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_check_reports_the_status(server: int) -> None:
    assert check(f"http://127.0.0.1:{server}/healthz") == 200
    with pytest.raises(Unhealthy, match="answered 503"):
        check(f"http://127.0.0.1:{server}/readyz")
    with pytest.raises(Unhealthy, match="not an http"):
        check("file:///etc/passwd")


def test_check_reports_an_unreachable_port() -> None:
    with pytest.raises(Unhealthy, match="unreachable"):
        check("http://127.0.0.1:9/healthz", timeout_s=2)


def test_cli_reads_the_port_the_service_reads(server: int) -> None:
    env = {"RS_WORKER_PORT": str(server)}
    assert run_check("workers", env=env).returncode == 0
    not_ready = run_check("workers", "/readyz", env=env)
    assert not_ready.returncode == 1
    assert "answered 503" in not_ready.stderr
    assert run_check("nosuchservice", env=env).returncode == 2


def test_url_follows_port_and_tls_settings() -> None:
    gateway = ENDPOINTS["gateway"]  # its operations port, plain HTTP even when the API is TLS
    assert gateway.url("/healthz", {}) == "http://127.0.0.1:9100/healthz"
    assert gateway.url("/readyz", {"RS_GATEWAY_OPS_PORT": "9443"}) == "http://127.0.0.1:9443/readyz"
    tls = {"RS_X_TLS": "/etc/tls/tls.crt"}
    assert Endpoint("RS_X_PORT", 1, tls_env="RS_X_TLS").url("/healthz", tls).startswith("https://")
    assert Endpoint("RS_X_PORT", 1).url("/healthz", tls).startswith("http://")
