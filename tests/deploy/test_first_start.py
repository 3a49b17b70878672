"""The first five minutes, as a newcomer has them: `make up` on a fresh clone, no Go on the PATH,
no other command, then a review classified through the gateway.

The clone is of this checkout's HEAD (what was committed), in a folder with no ``../shared``
beside it, so the first model is trained on the repository's sample. `make up` installs its own
``.venv`` from ``uv.lock``: with uv's cache warm (every checkout here has filled it) that takes
seconds, as uv links the cached packages instead of downloading them, so the test runs the real
command rather than a shortcut around it. Every port is a free one, so it runs beside a
``make up`` and the suite's own stack. Before the model is ready the gateway must answer
503 no_model at once; the start must log no ERROR line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from deploy.local.launcher import ROOT, free_port
from tests.gateway_harness import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# A log line at ERROR (or worse) from any part: our services, Kafka (log4j), PostgreSQL, uvicorn.
ERROR_LINE = re.compile(r"\b(ERROR|FATAL|CRITICAL|PANIC)\b|Traceback")
# Settings of the surrounding test session (its own stack) that must not reach the clone's.
INHERITED = ("RS_", "DATABASE_URL", "MLFLOW_", "VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT")


def without_go(path: str) -> str:
    """PATH minus every folder that holds a `go` command."""
    kept = [d for d in path.split(os.pathsep) if d and not (Path(d) / "go").exists()]
    return os.pathsep.join(kept)


def newcomer_env(clone: Path) -> tuple[dict[str, str], int]:
    """The environment of a fresh shell, with free ports; returns it and the gateway's port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED)}
    env["PATH"] = without_go(env.get("PATH", ""))
    assert shutil.which("go", path=env["PATH"]) is None
    gateway = free_port()
    env |= {
        "RS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "RS_STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
        # The SASL listener too: at its default (9094) a port held by anything else on the
        # machine failed the broker's start ("Address already in use") in one CI run.
        "RS_STACK_KAFKA_SASL_PORT": str(free_port()),
        "RS_STACK_KAFKA_HEAP_MB": "384",
        "DATABASE_URL": (
            f"postgresql://reviewstream:reviewstream@127.0.0.1:{free_port()}/reviewstream"
        ),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "RS_STACK_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "RS_STACK_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "RS_GATEWAY_PORT": str(gateway),
        "RS_GATEWAY_OPS_PORT": str(free_port()),
        "RS_WORKER_PORT": str(free_port()),
        "RS_STATS_PORT": str(free_port()),
        "RS_WATCHER_PORT": str(free_port()),
        # The watcher's default is 5 s; 1 s takes up to 4 s off the wait for the first answer.
        "RS_WATCHER_POLL_INTERVAL_S": "1",
    }
    return env, gateway


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as in a terminal: to the whole process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_make_up_on_a_fresh_clone_answers_a_review(tmp_path: Path) -> None:
    clone = tmp_path / "reviewstream"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    assert not (clone.parent / "shared").exists()
    env, port = newcomer_env(clone)
    log_path = tmp_path / "make-up.log"
    started = time.monotonic()
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            ["make", "up"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    refused_at_once: float | None = None
    answer: httpx.Response | None = None
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            deadline = started + 480
            while answer is None:
                assert process.poll() is None, log_path.read_text()[-6000:]
                assert time.monotonic() < deadline, log_path.read_text()[-6000:]
                try:
                    model = http.get("/v1/model").json()["state"]
                except httpx.TransportError:
                    model = "gateway not up"
                if model == "none" and refused_at_once is None:
                    sent = time.monotonic()
                    refused = http.post("/v1/classify", json={"text": "Too early?"})
                    refused_at_once = time.monotonic() - sent
                    assert refused.status_code == 503, refused.text
                    assert refused.json()["error"] == "no_model"
                elif model == "deployed":
                    answer = http.post("/v1/classify", json={"text": "Lovely staff, great food."})
                else:
                    time.sleep(0.5)
        first_answer_s = time.monotonic() - started
    finally:
        stop(process)
    log = log_path.read_text(errors="replace")
    assert answer is not None
    assert answer.status_code == 200, f"{answer.text}\n{log[-6000:]}"
    body = answer.json()
    assert (body["model_name"], body["model_version"]) == ("reviewstream-sentiment", "1")
    assert body["verdict"] in {"positive", "negative"}
    assert refused_at_once is not None, "the gateway was never seen without a model"
    assert refused_at_once < 1.0
    assert "training the fast model on the repository's sample" in log
    # How to sign in to the MLflow UI: a user and the file with its generated password.
    login = re.search(r"sign in as people \(reads everything; password in (\S+)\)", log)
    assert login is not None, log[:3000]
    assert Path(login.group(1)).is_file()
    assert re.search(r"INFO gateway\.kafka: waiting for Kafka at 127\.0\.0\.1:\d+", log)
    start = log.split("SIGINT received")[0]  # the start, up to the Ctrl-C
    errors = [line for line in start.splitlines() if ERROR_LINE.search(line)]
    assert errors == [], "\n".join(errors)
    ARTIFACTS.mkdir(exist_ok=True)
    figures = {
        "make_up_to_first_answer_s": round(first_answer_s, 1),
        "no_model_answer_s": round(refused_at_once, 3),
    }
    (ARTIFACTS / "first-start.json").write_text(json.dumps(figures, indent=1))
