"""``python -m export lineage V --reproduce``: train a version's model again, exactly as recorded,
and compare the figures with the original run's.

What a run records is what reproduces it: its data files (path and sha256, checked before use
and copied, so that nothing changes under the training), its git commit (checked out in a
temporary worktree; a run from a dirty tree is refused unless asked), the sha256 of its
``uv.lock`` (this environment is reused when its lock is that one, else the commit's lock is
installed with uv into a temporary environment), and its parameters (passed to that commit's
``python -m training train --no-promote`` as ``RS_TRAIN_*`` variables, over no parameters file).
The reproduction is tracked in a temporary MLflow store of its own, unless a tracking URI is
given, so the registry that serves is never touched. Training runs as a subprocess of the
recorded commit: the release package never imports training, and must not run today's code.
The fast family on a CPU is deterministic, so its figures must be identical; elsewhere they
must agree within a tolerance.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run

REPO = Path(__file__).resolve().parent.parent
# The figures compared: the test set's (ONNX), the validation split's, and the training curve.
COMPARED = (
    "test_accuracy",
    "test_macro_f1",
    "test_roc_auc",
    "test_log_loss",
    "test_tn",
    "test_fp",
    "test_fn",
    "test_tp",
    "val_accuracy",
    "val_macro_f1",
    "val_roc_auc",
    "val_log_loss",
    "best_epoch",
)
CURVES = ("epoch_train_loss", "epoch_val_loss", "epoch_val_accuracy")
DATASETS = ("train", "validation", "test")
# Parameters that say where and how a run was tracked, not what it trained; the data files are
# checked by their sha256 instead of their path, and the device by the one the run trained on.
NOT_COMPARED = {
    "experiment",
    "promote",
    "progress",
    "params_file",
    "train_path",
    "test_path",
    "device",
}
TAIL_LINES = 40


class ReproduceError(Exception):
    """The run cannot be reproduced as recorded (the message says why)."""


@dataclass(frozen=True)
class Recorded:
    """What one training run recorded, as reproduction needs it."""

    run_id: str
    experiment: str
    commit: str
    dirty: bool
    lock_sha256: str
    family: str
    device: str
    params: dict[str, str]
    data_files: dict[str, tuple[str, str]]  # "train" / "test": (path, sha256)
    data_sha256: dict[str, str]


@dataclass(frozen=True)
class Row:
    name: str
    original: float | None
    reproduced: float | None

    def difference(self) -> float:
        if self.original is None or self.reproduced is None:
            return math.inf
        return abs(self.reproduced - self.original)

    def agrees(self, tolerance: float) -> bool:
        if self.original is None or self.reproduced is None:
            return self.original is self.reproduced
        if tolerance == 0:
            return self.original == self.reproduced
        return self.difference() <= tolerance


@dataclass(frozen=True)
class Reproduction:
    original: Recorded
    run_id: str
    tracking_uri: str
    tolerance: float
    rows: list[Row]
    problems: list[str]  # data or parameters that differ: no comparison of figures is fair

    @property
    def agrees(self) -> bool:
        return not self.problems and all(r.agrees(self.tolerance) for r in self.rows)


def recorded(client: MlflowClient, run_id: str) -> Recorded:
    run = client.get_run(run_id)
    tags = run.data.tags
    files: dict[str, tuple[str, str]] = {}
    for name in ("train", "test"):
        sources = json.loads(tags.get(f"data.{name}.sources", "[]"))
        if len(sources) != 1:
            raise ReproduceError(f"run {run_id} records no single {name} file")
        files[name] = (sources[0]["path"], sources[0]["sha256"])
    experiment = client.get_experiment(run.info.experiment_id)
    return Recorded(
        run_id=run_id,
        experiment=experiment.name,
        commit=tags.get("git_commit", "unknown"),
        dirty=tags.get("git_dirty") != "false",
        lock_sha256=tags.get("uv_lock_sha256", "none"),
        family=tags.get("family", run.data.params.get("family", "")),
        device=tags.get("device", "cpu"),
        params=dict(run.data.params),
        data_files=files,
        data_sha256={name: tags.get(f"data.{name}.sha256", "") for name in DATASETS},
    )


def fetch_data(source: tuple[str, str], into: Path) -> Path:
    """Copy a recorded data file, refusing it when its bytes are not the recorded ones."""
    path, expected = source
    into.mkdir(parents=True, exist_ok=True)
    target = into / Path(path).name
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as src, target.open("wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                dst.write(chunk)
    except OSError as exc:
        raise ReproduceError(f"cannot read the recorded data file {path}: {exc}") from None
    if digest.hexdigest() != expected:
        raise ReproduceError(
            f"{path} has changed since the run: sha256 {digest.hexdigest()}, recorded {expected}"
        )
    return target


@contextmanager
def checkout(commit: str, into: Path) -> Iterator[Path]:
    """The recorded commit in a temporary git worktree, removed again afterwards."""
    known = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if commit == "unknown" or known.returncode != 0:
        raise ReproduceError(f"commit {commit} is not in the repository at {REPO} (fetch it?)")
    added = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(into), commit],
        capture_output=True,
        text=True,
        check=False,
    )
    if added.returncode != 0:
        raise ReproduceError(f"cannot check out {commit}: {added.stderr.strip()}")
    try:
        yield into
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(into)],
            check=False,
            capture_output=True,
        )


def python_for(original: Recorded, source: Path, workdir: Path) -> str:
    """This interpreter when its lock is the run's, else the run's lock installed by uv."""
    if sha256_of(REPO / "uv.lock") == original.lock_sha256:
        return sys.executable
    if sha256_of(source / "uv.lock") != original.lock_sha256:
        raise ReproduceError(f"commit {original.commit}'s uv.lock is not the one the run used")
    uv = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    if not Path(uv).is_file():
        raise ReproduceError("the run used another uv.lock, and no uv is here to install it")
    venv = workdir / "venv"
    extra = "--extra=training"
    synced = subprocess.run(
        [uv, "sync", "--frozen", extra, "--no-dev", "--no-install-project"],
        cwd=source,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        capture_output=True,
        text=True,
        check=False,
    )
    if synced.returncode != 0:
        raise ReproduceError(f"cannot install the run's uv.lock: {synced.stderr.strip()[-2000:]}")
    return str(venv / "bin" / "python")


def training_env(
    original: Recorded, train: Path, test: Path, tracking_uri: str, model_name: str, workdir: Path
) -> dict[str, str]:
    """The recorded parameters as the settings variables of ``python -m training``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RS_TRAIN_", "RS_EXPORT_"))
        and k not in {"MLFLOW_TRACKING_URI", "DATABASE_URL", "RS_DATABASE_URL"}
    }
    section: dict[str, str | None] = {}
    prefix = f"{original.family}."
    for key, value in original.params.items():
        if key.startswith(prefix):
            if key != "accurate.encoder":  # a record of the weights, not a setting
                section[key.removeprefix(prefix)] = None if value == "None" else value
        elif "." not in key and key not in NOT_COMPARED and value != "None":
            env[f"RS_TRAIN_{key.upper()}"] = value
    env.update(
        {
            # The family's whole section at once: a value None can only be said in JSON.
            f"RS_TRAIN_{original.family.upper()}": json.dumps(section),
            "RS_TRAIN_TRAIN_PATH": str(train),
            "RS_TRAIN_TEST_PATH": str(test),
            "RS_TRAIN_DEVICE": original.device,
            "RS_TRAIN_EXPERIMENT": f"{original.experiment}-reproductions",
            "RS_TRAIN_PARAMS_FILE": str(workdir / "no-params.json"),  # the recorded ones only
            "RS_TRAIN_PROGRESS": "false",
            "RS_EXPORT_MODEL_NAME": model_name,
            "MLFLOW_TRACKING_URI": tracking_uri,
        }
    )
    return env


def reproduce(
    client: MlflowClient,
    run_id: str,
    *,
    model_name: str,
    tolerance: float,
    allow_dirty: bool = False,
    tracking_uri: str | None = None,
) -> Reproduction:
    """Train the run again at its commit, on its data, with its parameters; compare."""
    original = recorded(client, run_id)
    if original.dirty and not allow_dirty:
        raise ReproduceError(
            f"run {run_id} was made from a tree with uncommitted changes at {original.commit};"
            " its code is not in git (--allow-dirty reproduces it at the commit anyway)"
        )
    exact = original.family == "fast" and original.device == "cpu"
    with tempfile.TemporaryDirectory(prefix="rs-reproduce-") as tmp:
        workdir = Path(tmp)
        train = fetch_data(original.data_files["train"], workdir / "data" / "train")
        test = fetch_data(original.data_files["test"], workdir / "data" / "test")
        uri = tracking_uri or temporary_store(workdir, f"{original.experiment}-reproductions")
        with checkout(original.commit, workdir / "source") as source:
            python = python_for(original, source, workdir)
            env = training_env(original, train, test, uri, f"{model_name}-reproduction", workdir)
            started_ms = int(time.time() * 1000)
            log = workdir / "train.log"
            with log.open("w") as out:
                subprocess.run(
                    [python, "-m", "training", "train", "--no-promote"],
                    cwd=source,
                    env={**env, "PYTHONPATH": str(source)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            again_client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            again = _reproduction_run(again_client, env["RS_TRAIN_EXPERIMENT"], started_ms)
            if again is None:
                tail = "\n".join(log.read_text().splitlines()[-TAIL_LINES:])
                raise ReproduceError(f"the reproduction recorded no run; its log ends:\n{tail}")
        rows = compare_figures(client, run_id, again_client, again)
        problems = compare_inputs(original, recorded(again_client, again.info.run_id))
        result = Reproduction(
            original=original,
            run_id=again.info.run_id,
            tracking_uri=uri if tracking_uri else "temporary store (deleted)",
            tolerance=0.0 if exact else tolerance,
            rows=rows,
            problems=problems,
        )
        again_client.set_tag(again.info.run_id, "reproduction_of", run_id)
        again_client.set_tag(again.info.run_id, "reproduction_agrees", str(result.agrees).lower())
    return result


def temporary_store(workdir: Path, experiment: str) -> str:
    """A throwaway MLflow store (SQLite, local artifacts) with the experiment made in it."""
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    store = MlflowClient(tracking_uri=uri, registry_uri=uri)
    store.create_experiment(experiment, artifact_location=(workdir / "artifacts").as_uri())
    return uri


def _reproduction_run(client: MlflowClient, experiment: str, since_ms: int) -> Run | None:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"attributes.start_time >= {since_ms}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def compare_figures(
    client: MlflowClient, run_id: str, again_client: MlflowClient, again: Run
) -> list[Row]:
    before = client.get_run(run_id).data.metrics
    after = again.data.metrics
    rows = [Row(name, before.get(name), after.get(name)) for name in COMPARED]
    for curve in CURVES:
        first = {m.step: m.value for m in client.get_metric_history(run_id, curve)}
        second = {
            m.step: m.value for m in again_client.get_metric_history(again.info.run_id, curve)
        }
        for step in sorted(first.keys() | second.keys()):
            rows.append(Row(f"{curve}[{step}]", first.get(step), second.get(step)))
    return rows


def compare_inputs(original: Recorded, again: Recorded) -> list[str]:
    """Data and parameters that differ between the two runs (each makes figures incomparable)."""
    problems = [
        f"{name} data: sha256 {again.data_sha256[name]}, recorded {original.data_sha256[name]}"
        for name in DATASETS
        if again.data_sha256[name] != original.data_sha256[name]
    ]
    for key in sorted(original.params.keys() | again.params.keys()):
        if key in NOT_COMPARED or key.startswith("export."):
            continue
        if original.params.get(key) != again.params.get(key):
            problems.append(
                f"parameter {key}: {again.params.get(key)}, recorded {original.params.get(key)}"
            )
    if again.commit != original.commit:
        problems.append(f"commit {again.commit}, recorded {original.commit}")
    return problems


def render_reproduction(result: Reproduction) -> str:
    """The comparison as a table, then the verdict."""
    o = result.original
    lines = [
        f"reproduced run {o.run_id} at commit {o.commit} ({o.family} on {o.device}):"
        f" run {result.run_id} in {result.tracking_uri}",
        f"  {'figure':<24} {'original':>14} {'reproduced':>14} {'difference':>12}",
    ]
    for row in result.rows:
        mark = "" if row.agrees(result.tolerance) else "  MISMATCH"
        lines.append(
            f"  {row.name:<24} {_number(row.original):>14} {_number(row.reproduced):>14}"
            f" {row.difference():>12.3g}{mark}"
        )
    lines += [f"  DIFFERENT INPUT: {p}" for p in result.problems]
    rule = "identical" if result.tolerance == 0 else f"within {result.tolerance:g}"
    verdict = "agree" if result.agrees else "DO NOT agree"
    lines.append(f"the figures {verdict} ({rule} required)")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "missing" if value is None else f"{value:.6g}"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "none"
