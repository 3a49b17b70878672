"""What a training run records in MLflow besides metrics: code version, environment, data."""

from __future__ import annotations

import hashlib
import json
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.types import ColSpec, DataType, Schema

from contracts.reviewfiles import LoadReport
from training.data import Examples
from training.settings import Settings

# MLflow keeps a dataset digest of at most 36 characters; the full sha256 goes in a tag.
DIGEST_CHARS = 32
SCHEMA = Schema([ColSpec(DataType.string, "text"), ColSpec(DataType.long, "label")])


class ReviewDataset(MetaDataset):
    """Labelled reviews as an MLflow dataset: source file, content digest, schema, row counts."""

    def __init__(self, examples: Examples) -> None:
        with warnings.catch_warnings():
            # MLflow registers its local-file source class twice and warns that a path matches
            # both; either one is right.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            source = resolve_dataset_source(Path(examples.sources[0].path).resolve().as_uri())
        self._profile = {"num_rows": len(examples), "positive_rate": examples.positive_rate()}
        super().__init__(
            source=source,
            name=examples.name,
            digest=examples.digest()[:DIGEST_CHARS],
            schema=SCHEMA,
        )

    @property
    def profile(self) -> Any:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


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


IMAGE_TAG = "image"
IMAGE_DIGEST_TAG = "image.digest"


def image_tags(settings: Settings) -> dict[str, str]:
    """The container image the run executes in, by reference and digest; "none" where it runs
    outside one (a virtual environment) or where whoever started it did not say the digest."""
    return {
        IMAGE_TAG: settings.image or "none",
        IMAGE_DIGEST_TAG: settings.image_digest or "none",
    }


def params_file_tags(path: Path) -> dict[str, str]:
    """Which parameters file the run's defaults came from (tuned values live there)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "none"
    return {"params_file": str(path), "params_file_sha256": digest}


def log_examples(examples: Examples, context: str) -> None:
    """Log examples as an MLflow dataset input (digest = content sha256) with file lineage."""
    digest = examples.digest()
    mlflow.log_input(ReviewDataset(examples), context=context)
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
