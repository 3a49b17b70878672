"""The first start's model: when the registry serves none, train, gate and promote the fast one.

``make up`` on a fresh clone should answer a review with nothing else typed. This process waits
for MLflow, asks where the serving alias points, and, when it points nowhere, runs the release
pipeline as ``make train`` does (``python -m training train --family fast``), on the shared data
beside the checkout, or on the repository's sample (``data/sample/``) where that is absent. The
registry watcher then announces the new version and the workers load it by themselves. Later
starts find the alias and train nothing; ``make train`` retrains whenever you like.

honcho stops the whole stack when any of its processes exits, so this one stays up, idle, once
its work is done, and stops with the stack (stopping a training run still going).
Run alone with ``python -m deploy.local.bootstrap``; off with ``RS_STACK_BOOTSTRAP_MODEL=false``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from deploy.local.settings import StackSettings
from export.settings import Settings as ExportSettings
from runtime.mlflow_credentials import basic_auth_header
from runtime.startup import http_ok, wait_for

log = logging.getLogger("bootstrap")

ROOT = Path(__file__).resolve().parents[2]
# training.settings' default data (not imported from there: that module loads scikit-learn,
# seconds of start-up and memory for a process that mostly idles; a unit test checks they agree).
SHARED_YELP = ROOT.parent / "shared" / "data" / "yelp"
SAMPLE = ROOT / "data" / "sample"
# The sample's 1,200 training reviews get the settings and gates the tests use for them: fewer
# hash buckets, four epochs, and an accuracy floor that suits the size (0.8, not 0.95).
SAMPLE_SETTINGS = {
    "RS_TRAIN_TRAIN_PATH": str(SAMPLE / "train.csv.gz"),
    "RS_TRAIN_TEST_PATH": str(SAMPLE / "test.csv.gz"),
    "RS_TRAIN_FAST__BUCKETS": str(1 << 16),
    "RS_TRAIN_FAST__EPOCHS": "4",
    "RS_TRAIN_FAST__BATCH_SIZE": "16",
    "RS_EXPORT_ACCURACY_FLOOR": "0.8",
    "RS_EXPORT_BEHAVIOUR_MIN_PASS_RATE": "0.6",
}
TRAIN_COMMAND = ["-m", "training", "train", "--family", "fast", "--no-progress"]


class RegistryError(RuntimeError):
    """The registry answered something other than a version or "no such alias"."""


@dataclass(frozen=True)
class TrainingData:
    """Which reviews the first model learns from, said in the log, and the settings for them."""

    description: str
    settings: dict[str, str] = field(default_factory=dict)


def training_data(environ: dict[str, str]) -> TrainingData:
    given = environ.get("RS_TRAIN_TRAIN_PATH")
    if given:
        return TrainingData(f"the reviews named by RS_TRAIN_TRAIN_PATH ({given})")
    shared = SHARED_YELP / "train.csv.gz"
    if shared.is_file() and (SHARED_YELP / "test.csv.gz").is_file():
        return TrainingData(f"the shared Yelp reviews ({shared})")
    return TrainingData(
        f"the repository's sample ({SAMPLE.relative_to(ROOT)}/, 1,200 reviews: no shared data "
        f"at {SHARED_YELP}), with the sample's gates (accuracy floor 0.8)",
        SAMPLE_SETTINGS,
    )


class Registry:
    """The one MLflow REST call this needs, over plain HTTP (no MLflow client in a process
    that mostly idles): which version does an alias name. Signed in as MLflow's client would
    be (``MLFLOW_TRACKING_USERNAME``, the password or its file)."""

    def __init__(self, tracking_uri: str) -> None:
        self.base = tracking_uri.rstrip("/")
        self.headers = basic_auth_header()

    def serving(self, name: str, alias: str) -> str | None:
        """The version the alias points at, or None when the model or the alias is missing."""
        query = urllib.parse.urlencode({"name": name, "alias": alias})
        url = f"{self.base}/api/2.0/mlflow/registered-models/alias?{query}"
        request = urllib.request.Request(url, headers=self.headers)  # noqa: S310 - see below
        try:
            # http(s) only, checked in main(): no file: or custom scheme reaches urlopen.
            with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
                return str(json.load(reply)["model_version"]["version"])
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            if exc.code in {400, 404} and (
                "RESOURCE_DOES_NOT_EXIST" in body or "INVALID_PARAMETER_VALUE" in body
            ):
                return None
            if exc.code == 403:
                # MLflow's answer to a user who is not an admin about a model that does not
                # exist; every role reads every model (inference.registry.ABSENT says more).
                return None
            raise RegistryError(f"the registry answered {exc.code}: {body[:200]}") from exc


class Bootstrap:
    def __init__(self, settings: StackSettings, export: ExportSettings) -> None:
        self.settings = settings
        self.export = export
        self.registry = Registry(settings.mlflow_tracking_uri)
        self.stopping = threading.Event()
        self._training: subprocess.Popen[bytes] | None = None

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()
        child = self._training
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)  # the run ends as failed in MLflow, not left open
            # honcho kills this process 5 s after its SIGTERM: never leave training behind.
            timer = threading.Timer(3.0, _kill, args=(child,))
            timer.daemon = True
            timer.start()

    def run(self) -> None:
        """Train the first model if the registry serves none; then idle until stopped."""
        name, alias = self.export.model_name, self.export.alias
        uri = self.settings.mlflow_tracking_uri
        reachable = asyncio.run(
            wait_for(
                "MLflow",
                uri,
                http_ok(f"{self.registry.base}/health"),
                log=log,
                retry_on=OSError,
                give_up=self.stopping.is_set,
            )
        )
        try:
            if reachable:
                version = self.registry.serving(name, alias)
                if version is not None:
                    log.info(
                        "the registry serves %s@%s version %s: nothing to train "
                        "(make train retrains)",
                        name,
                        alias,
                        version,
                    )
                else:
                    self.train(name, alias)
        except (RegistryError, OSError) as exc:
            # Exiting would stop the whole stack (honcho): say it, and let the rest run.
            log.error(
                "could not ask the registry at %s (%s); the stack runs on, `make train` "
                "trains a model",
                uri,
                exc,
            )
        self.stopping.wait()

    def train(self, name: str, alias: str) -> None:
        data = training_data(dict(os.environ))
        log.info(
            "no model is serving as %s@%s yet: training the fast model on %s, then gates and "
            "promotion (about a minute; the chat UI answers 503 no_model until then)",
            name,
            alias,
            data.description,
        )
        started = time.monotonic()
        env = {**os.environ, **data.settings, "PYTHONUNBUFFERED": "1"}
        if self.stopping.is_set():
            return
        self._training = subprocess.Popen([sys.executable, *TRAIN_COMMAND], cwd=ROOT, env=env)
        code = self._training.wait()
        self._training = None
        took = time.monotonic() - started
        if self.stopping.is_set():
            log.info(
                "the stack stopped while the first model was in training; unless it was "
                "promoted already, the next start trains again"
            )
        elif code != 0:
            log.error(
                "training the first model failed (exit code %d after %.0f s; the lines above say "
                "why): the stack runs on without a model; `make train` tries again",
                code,
                took,
            )
        else:
            version = self.registry.serving(name, alias)
            log.info(
                "%s version %s trained and promoted to %s in %.0f s; the workers load it by "
                "themselves, then the chat UI answers (later starts reuse it)",
                name,
                version,
                alias,
                took,
            )


def _kill(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()


def main() -> int:
    settings = StackSettings()
    uri = settings.mlflow_tracking_uri
    bootstrap = Bootstrap(settings, ExportSettings())
    signal.signal(signal.SIGTERM, bootstrap.stop)
    signal.signal(signal.SIGINT, bootstrap.stop)
    if not uri.startswith(("http://", "https://")):
        log.info("MLflow at %s is not an HTTP server: no first model is trained here", uri)
        bootstrap.stopping.wait()
        return 0
    bootstrap.run()
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
