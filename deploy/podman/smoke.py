"""The container smoke test (``make containers-smoke``, part of ``make test``): the images of
``make images`` run for real, the compose file as written, under podman.

The docker compose CLI (built into ``.tools`` by ``make tools``) talks to podman's
Docker-compatible API (``podman system service`` on a socket of this run's own). Without
systemd, podman schedules no health checks, so this run runs each container's own check
(``podman healthcheck run``) every few seconds; compose waits on their results as it would on
Docker's. Steps, each printed with its time:

0. the worker image has no torch;
1. the stack up, every health check green (``up --wait``);
2. a model trained and promoted by the training image (``run training``);
3. a review classified through the gateway container, over REST and over WebSocket;
4. a second version made the serving one (``python -m export promote`` as the release user):
   the watcher announces it and every worker container reloads and answers with it;
5. ``down`` and ``up`` again: the volumes keep the registry, the model and the data;
6. ``--scale workers=3``: the three workers share the requests.

A failure names the containers that are not well, shows their last log lines, and exits 1.
Everything runs as a compose project of its own (``rs-smoke``) with its own secrets and free
loopback ports, and is removed at the end, volumes included.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import typer
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed
from websockets.sync.client import connect

from deploy import dev_secrets
from deploy.podman.report import (
    LOG_LINES,
    DataDir,
    KafkaImage,
    PostgresImage,
    Registry,
    SmokeFailed,
    Steps,
    Tag,
    podman,
    show_logs,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose" / "compose.yaml"
COMPOSE = ROOT / ".tools" / "docker" / "cli-plugins" / "docker-compose"
PROJECT = "rs-smoke"
MODEL = "reviewstream-sentiment"
ONE_SHOT_JOBS = ("init-job", "mlflow-webhook")  # exit 0 when done; other services keep running
# No compose command of this test takes this long, unless something hangs.
COMMAND_TIMEOUT_S = 900
# A short training run: the fast family on a seeded subset (seconds, not minutes). This checks
# the containers, not the model: such a run's accuracy (about 0.94) is under the release floor
# (0.95), so the floor is lowered for it; every other gate holds as released.
TRAIN_ENV = {
    "RS_TRAIN_MAX_TRAIN_ROWS": "20000",
    "RS_TRAIN_MAX_TEST_ROWS": "2000",
    "RS_EXPORT_ACCURACY_FLOOR": "0.9",
}

app = typer.Typer(add_completion=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def containers(everything: bool = False) -> list[dict[str, Any]]:
    """This project's containers as ``podman ps`` sees them (running only, by default)."""
    out = podman(
        "ps", *(["-a"] if everything else []), "--format", "json",
        "--filter", f"label=com.docker.compose.project={PROJECT}",
    )  # fmt: skip
    found: list[dict[str, Any]] = json.loads(out) if out else []
    return found


def health_of(container: dict[str, Any]) -> str:
    """ "healthy", "unhealthy", "starting", or "" for a container without a health check."""
    status = str(container.get("Status", ""))
    for state in ("unhealthy", "healthy", "starting"):
        if f"({state})" in status:
            return state
    return ""


def service_of(container: dict[str, Any]) -> str:
    return str(container.get("Labels", {}).get("com.docker.compose.service", "?"))


class HealthChecks(threading.Thread):
    """Runs every container's own health check on its own interval, as Docker would: podman
    leaves the scheduling to systemd timers, and there is no systemd here."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.due: dict[str, float] = {}  # container id -> when its next check runs
        self.interval: dict[str, float] = {}

    def run(self) -> None:
        while not self.stopping.wait(1):
            try:
                self.check_due()
            except (subprocess.CalledProcessError, json.JSONDecodeError, KeyError):
                continue  # a container gone between ps and the check

    def check_due(self) -> None:
        now = time.monotonic()
        for c in containers():
            if not health_of(c):
                continue
            cid = c["Id"]
            if cid not in self.interval:
                config = json.loads(podman("inspect", cid))[0]["Config"]["Healthcheck"]
                self.interval[cid] = (config.get("Interval") or 30e9) / 1e9
                self.due[cid] = now + self.interval[cid]
            if now >= self.due[cid]:
                subprocess.run(["podman", "healthcheck", "run", cid], capture_output=True)
                self.due[cid] = time.monotonic() + self.interval[cid]


class Stack:
    """The compose project, its secrets, ports, API socket and health checks."""

    def __init__(self, folder: Path, images: dict[str, str], data_dir: Path) -> None:
        self.folder = folder
        self.api_key = dev_secrets.compose(folder) or ""
        self.gateway_port = free_port()
        socket_path = folder / "podman.sock"
        self.service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for attempt in Retrying(stop=stop_after_delay(30), wait=wait_fixed(0.2), reraise=True):
            with attempt:
                if not socket_path.exists():
                    raise SmokeFailed(f"podman system service made no socket at {socket_path}")
        secrets = folder / "secrets"
        # Nothing of the caller's RS_* / MLflow settings leaks into what the file says.
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("RS_", "COMPOSE_", "MLFLOW_"))
        } | {
            "DOCKER_HOST": f"unix://{socket_path}",
            "RS_COMPOSE_GATEWAY_PORT": str(self.gateway_port),
            "RS_COMPOSE_KAFKA_PORT": str(free_port()),
            "RS_COMPOSE_MLFLOW_PORT": str(free_port()),
            "RS_COMPOSE_API_KEYS_FILE": str(secrets / "api-keys.json"),
            "RS_COMPOSE_MODELS_SIGNING_KEY_FILE": str(secrets / "models-signing.pem"),
            "RS_COMPOSE_MODELS_VERIFY_KEY_FILE": str(secrets / "models-signing.pub"),
            "RS_COMPOSE_MLFLOW_SECRETS_DIR": str(folder / "mlflow-secrets"),
            "RS_COMPOSE_DATA_DIR": str(data_dir),
            **images,
        }
        self.health = HealthChecks()
        self.health.start()

    def compose(self, *args: str, env: dict[str, str] | None = None) -> str:
        command = [str(COMPOSE), "-p", PROJECT, "-f", str(COMPOSE_FILE)]
        command += ["--env-file", str(self.folder / ".env"), *args]
        try:
            result = subprocess.run(
                command, env=self.env | (env or {}), capture_output=True, text=True,
                check=False, timeout=COMMAND_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise SmokeFailed(
                f"docker compose {' '.join(args)} still running after {COMMAND_TIMEOUT_S} s"
            ) from None
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-LOG_LINES:])
            raise SmokeFailed(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n{tail}"
            )
        return result.stdout

    def up(self, *args: str) -> None:
        self.compose("up", "-d", "--no-build", "--pull", "never", "--wait", "--wait-timeout",
                     "400", *args)  # fmt: skip
        for c in containers():
            if health_of(c) not in ("healthy", ""):
                raise SmokeFailed(f"{c['Names'][0]} is {health_of(c)} after up --wait")

    def close(self) -> None:
        try:
            self.compose("down", "-v", "--remove-orphans", "--timeout", "10")
        finally:
            self.health.stopping.set()
            self.service.terminate()
            self.service.wait(timeout=30)

    def run_training(self, *command: str, env: dict[str, str] | None = None) -> str:
        flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return self.compose("run", "--rm", "--no-deps", *flags, "training", *command)

    def password(self, user: str) -> str:
        return (self.folder / "mlflow-secrets" / user).read_text().strip()

    # --- through the gateway container ----------------------------------------------------

    def classify(self, client: httpx.Client, text: str) -> dict[str, Any]:
        response = client.post(
            f"http://127.0.0.1:{self.gateway_port}/v1/classify",
            json={"text": text},
            headers={"X-API-Key": self.api_key},
            timeout=30,
        )
        if response.status_code != 200:
            raise SmokeFailed(f"POST /v1/classify: {response.status_code} {response.text[:300]}")
        answer: dict[str, Any] = response.json()
        return answer

    def classify_ws(self, text: str) -> dict[str, Any]:
        url = f"ws://127.0.0.1:{self.gateway_port}/v1/ws"
        with connect(url, additional_headers={"X-API-Key": self.api_key}, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "classify", "id": "c1", "text": text}))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                message: dict[str, Any] = json.loads(ws.recv(timeout=60))
                if message.get("type") == "prediction" and message.get("id") == "c1":
                    return message
                if message.get("type") == "error":
                    raise SmokeFailed(f"WebSocket classify: {message}")
        raise SmokeFailed("WebSocket classify: no prediction within 60 s")

    def served_by(self, version: str, workers: int, timeout_s: float) -> dict[str, int]:
        """Classify until ``workers`` distinct workers have answered with ``version``; the
        requests each answered."""
        seen: dict[str, int] = {}
        with httpx.Client() as client:
            for attempt in Retrying(
                stop=stop_after_delay(timeout_s), wait=wait_fixed(0.5), reraise=True,
                retry=retry_if_exception_type(SmokeFailed),
            ):  # fmt: skip
                with attempt:
                    for _ in range(12):
                        answer = self.classify(client, f"Smoke review {uuid.uuid4()}: lovely.")
                        if answer["model_version"] == version:
                            seen[answer["worker_id"]] = seen.get(answer["worker_id"], 0) + 1
                    if len(seen) < workers:
                        raise SmokeFailed(
                            f"{len(seen)} of {workers} workers answered with v{version}: {seen}"
                        )
        return seen


def well(container: dict[str, Any]) -> bool:
    """Running and not failing its health check, or a one-shot job done."""
    if service_of(container) in ONE_SHOT_JOBS:
        return container.get("State") == "running" or container.get("ExitCode") == 0
    return container.get("State") == "running" and health_of(container) in ("healthy", "")


def report_failure(reason: str) -> None:
    """Name each container that is not well and show its last log lines (every container's,
    when none stands out)."""
    print(f"\nFAILED: {reason}\n", flush=True)
    found = containers(everything=True)
    unwell = [c for c in found if not well(c)]
    for c in unwell or found:
        show_logs(c["Id"], f"{c['Names'][0]} ({service_of(c)}): {c.get('Status')}")
        if health_of(c) in ("unhealthy", "starting"):
            inspect = json.loads(podman("inspect", c["Id"]))[0]
            for check in (inspect["State"].get("Health") or {}).get("Log") or []:
                print(f"    health check exit {check['ExitCode']}: {check['Output'][-300:]!r}")


def model_version(output: str, promoted: bool) -> str:
    """The version ``python -m training train`` registered (and promoted), from its report."""
    registered = re.search(rf"^registered {MODEL} v(\d+)$", output, re.MULTILINE)
    if registered is None:
        raise SmokeFailed(f"no registered version in the training run's output:\n{output[-2000:]}")
    version = registered[1]
    if promoted and f"promoted v{version} to 'production'" not in output:
        raise SmokeFailed(f"v{version} was not promoted:\n{output[-2000:]}")
    return version


def check_no_torch(image: str) -> None:
    """The worker image serves ONNX models without torch (its extra pulls none)."""
    found = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", image, "python", "-c",
         "import importlib.util as u; print(u.find_spec('torch') is not None)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if found != "False":
        raise SmokeFailed(f"{image} has torch")


def smoke(stack: Stack, steps: Steps, worker_image: str) -> None:
    with steps.step("the worker image has no torch"):
        check_no_torch(worker_image)
    with steps.step("compose up: every container started, every health check green"):
        stack.up()
        print("    " + ", ".join(sorted(f"{c['Names'][0]}" for c in containers())), flush=True)
    with steps.step("train and promote a model in the training image"):
        first = model_version(stack.run_training(
            "python", "-m", "training", "train", "--family", "fast", "--no-progress",
            env=TRAIN_ENV,
        ), promoted=True)  # fmt: skip
        print(f"    {MODEL} v{first} registered and promoted", flush=True)
    with steps.step(f"every worker serves v{first}; a review classified over REST"):
        seen = stack.served_by(first, workers=2, timeout_s=180)
        print(f"    answers per worker: {seen}", flush=True)
    with steps.step("a review classified over WebSocket"):
        answer = stack.classify_ws("The food was cold and the staff rude.")
        print(
            f"    {answer['verdict']} ({answer['probability']:.2f}) by v{answer['model_version']}"
        )
    with steps.step("a second version promoted as release: the worker containers reload"):
        second = model_version(stack.run_training(
            "python", "-m", "training", "train", "--family", "fast", "--no-progress",
            "--no-promote", env=TRAIN_ENV,
        ), promoted=False)  # fmt: skip
        stack.run_training(
            "python", "-m", "export", "promote", second, "--reason", "container smoke test",
            "--by", "smoke", "--override",
            env={"MLFLOW_TRACKING_USERNAME": "release",
                 "MLFLOW_TRACKING_PASSWORD": stack.password("release"),
                 "MLFLOW_TRACKING_PASSWORD_FILE": ""},
        )  # fmt: skip
        seen = stack.served_by(second, workers=2, timeout_s=180)
        print(f"    alias production -> v{second}; answers per worker: {seen}", flush=True)
    with steps.step("down, then up again: the volumes keep the registry and the model"):
        stack.compose("down", "--timeout", "10")
        if containers(everything=True):
            raise SmokeFailed("containers left after down")
        stack.up()
        seen = stack.served_by(second, workers=2, timeout_s=180)
        print(f"    v{second} served again; answers per worker: {seen}", flush=True)
    with steps.step("--scale workers=3: three workers share the requests"):
        stack.up("--scale", "workers=3")
        seen = stack.served_by(second, workers=3, timeout_s=240)
        print(f"    answers per worker: {seen}", flush=True)


@app.command()
def main(
    registry: Registry,
    tag: Tag,
    kafka_image: KafkaImage,
    postgres_image: PostgresImage,
    data_dir: DataDir,
) -> None:
    """Run the compose stack from the built images and check it end to end."""
    images = {
        "RS_IMAGE_REGISTRY": registry,
        "RS_IMAGE_TAG": tag,
        "RS_COMPOSE_KAFKA_IMAGE": kafka_image,
        "RS_COMPOSE_POSTGRES_IMAGE": postgres_image,
    }
    steps = Steps()
    with tempfile.TemporaryDirectory(prefix="rs-smoke.") as folder:
        stack = Stack(Path(folder), images, data_dir.resolve())
        try:
            smoke(stack, steps, f"{registry}/worker:{tag}")
        except (SmokeFailed, subprocess.CalledProcessError, httpx.HTTPError, OSError) as exc:
            report_failure(str(exc))
            raise typer.Exit(1) from None
        finally:
            with steps.step("compose down -v: containers and volumes removed"):
                stack.close()
    steps.summary("container smoke test passed")


if __name__ == "__main__":
    sys.exit(app())
