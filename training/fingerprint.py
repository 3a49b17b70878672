"""The fingerprint of a training run: one sha256 over everything that decides what it ships.

Four parts, each a sha256 of its own, so that a changed fingerprint can say what changed:

- ``code``: every ``.py`` file of the packages that train, export, serve and describe a model
  (relative path and bytes, in path order), so a comment change retrains too: cheaper than
  proving which edits cannot matter;
- ``data``: the data snapshot's digest and the test file's (the gates score on it);
- ``params``: the resolved training and gate parameters as canonical JSON, without what only
  says where things are (paths, servers, topics) or how the run is displayed;
- ``lock``: ``uv.lock``, the exact third-party versions.

Recorded on the MLflow run as the tag ``fingerprint`` and ``fingerprint.<part>``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.settings import PLACE_FIELDS, Settings

TAG = "fingerprint"
PARTS = ("code", "data", "params", "lock")
# Not inputs of what a run ships: where the data lies (its digest is), where the run is
# recorded or the live data read, and how progress is shown.
NOT_PARAMS = {
    "train_path",
    "test_path",
    "experiment",
    "progress",
    "promote",
    "export.mlflow_tracking_uri",
    "export.database_url",
    "export.kafka",
}


def sha256_json(value: Any) -> str:
    """sha256 of canonical JSON: sorted keys, no spaces, ASCII."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    code: str
    data: str
    params: str
    lock: str

    @property
    def value(self) -> str:
        return sha256_json(asdict(self))

    def tags(self) -> dict[str, str]:
        return {TAG: self.value, **{f"{TAG}.{part}": getattr(self, part) for part in PARTS}}

    def changed_since(self, tags: Mapping[str, str]) -> list[str]:
        """The parts that differ from a run's fingerprint tags."""
        return [part for part in PARTS if tags.get(f"{TAG}.{part}") != getattr(self, part)]


def code_digest(root: Path, packages: Iterable[str]) -> str:
    """sha256 over the relative path and bytes of every ``.py`` file of ``packages``."""
    digest = hashlib.sha256()
    files = sorted(p for package in packages for p in (root / package).rglob("*.py"))
    if not files:
        raise FileNotFoundError(f"no Python files of {list(packages)} under {root}")
    for path in files:
        content = path.read_bytes()
        relative = path.relative_to(root).as_posix()
        # Length-prefixed, so that no two different trees hash alike.
        digest.update(f"{relative}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


def training_params(settings: Settings) -> dict[str, Any]:
    """The run's parameters as it logs them (general, the chosen family's, the gates'), less
    ``NOT_PARAMS``. Read from the settings alone: a run that skips never imports torch."""
    general = settings.model_dump(exclude={"fast", "accurate", "export", *PLACE_FIELDS})
    family = getattr(settings, settings.family).model_dump()
    gates = settings.export.model_dump()
    params = {
        **general,
        **{f"{settings.family}.{k}": v for k, v in family.items()},
        **{f"export.{k}": v for k, v in gates.items()},
    }
    return {key: value for key, value in params.items() if key not in NOT_PARAMS}


def lock_digest(root: Path) -> str:
    lock = root / "uv.lock"
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else "none"


def fingerprint(
    settings: Settings,
    *,
    snapshot_digest: str,
    test_digest: str,
    code_root: Path,
    code_packages: Iterable[str],
) -> Fingerprint:
    return Fingerprint(
        code=code_digest(code_root, code_packages),
        data=sha256_json({"snapshot": snapshot_digest, "test": test_digest}),
        params=sha256_json(training_params(settings)),
        lock=lock_digest(code_root),
    )
