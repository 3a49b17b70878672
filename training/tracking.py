"""What a training run records in MLflow besides metrics: code version, environment, data."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd  # type: ignore[import-untyped]
from mlflow.data.pandas_dataset import from_pandas

from training.data import Examples, LoadReport

# MLflow keeps a dataset digest of at most 36 characters; the full sha256 goes in a tag.
DIGEST_CHARS = 32


@dataclass(frozen=True)
class CodeVersion:
    commit: str
    dirty: bool
    lock_sha256: str

    def tags(self) -> dict[str, str]:
        return {
            "git_commit": self.commit,
            "git_dirty": str(self.dirty).lower(),
            "uv_lock_sha256": self.lock_sha256,
            "mlflow.source.git.commit": self.commit,
        }


def code_version(root: Path) -> CodeVersion:
    """The git commit of ``root``, whether the tree has uncommitted changes, the lock's hash."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain"))  # untracked (not ignored) files count too
    lock = root / "uv.lock"
    lock_sha = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else "none"
    return CodeVersion(commit=commit, dirty=dirty, lock_sha256=lock_sha)


def log_examples(examples: Examples, context: str) -> None:
    """Log examples as an MLflow dataset input (digest = content sha256) with file lineage."""
    digest = examples.digest()
    source = ",".join(s.path for s in examples.sources)
    frame = pd.DataFrame({"text": examples.texts, "label": examples.labels})
    dataset = from_pandas(
        frame, source=source, name=examples.name, digest=digest[:DIGEST_CHARS], targets="label"
    )
    mlflow.log_input(dataset, context=context)
    mlflow.set_tags(
        {
            f"data.{examples.name}.sha256": digest,
            f"data.{examples.name}.rows": str(len(examples)),
            f"data.{examples.name}.positive_rate": f"{examples.positive_rate():.4f}",
            f"data.{examples.name}.sources": json.dumps(
                [{"path": s.path, "sha256": s.sha256} for s in examples.sources]
            ),
        }
    )


def log_load_report(report: LoadReport, name: str) -> None:
    mlflow.set_tag(f"data.{name}.load_report", report.summary()[:4000])


def flat_params(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items()}
