"""The MLflow model registry, as the watcher sees it: where an alias points, what the version's
tags say, whether its bundle checks out, and the tags the watcher writes back."""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from contracts import ModelChanged
from inference import BundleError, OnnxPredictor, ReferenceMismatch
from inference.registry import changed_event, download_bundle
from inference.release import REFUSED, REFUSED_AT, AliasMove, current, now, rollback, tag

# MLflow keeps a tag value up to 5,000 characters.
TAG_LIMIT = 4000


@dataclass(frozen=True)
class Target:
    """The version an alias names: as the event that would ship it, and with its tags."""

    event: ModelChanged
    version: ModelVersion


class MlflowRegistry:
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def target(self, name: str, alias: str) -> Target | None:
        """Where the alias points now (blocking); raises while the registry is unreachable."""
        version = current(self.client, name, alias)
        if version is None:
            return None
        return Target(changed_event(version, alias), version)

    def newest(self, name: str, count: int) -> list[ModelVersion]:
        """The ``count`` newest versions of ``name``, with their tags (blocking); none for a
        name that MLflow's filter syntax cannot quote."""
        if "'" in name:
            return []
        found = self.client.search_model_versions(
            f"name = '{name}'", max_results=count, order_by=["version_number DESC"]
        )
        return list(found)

    def artifact_problem(self, event: ModelChanged) -> str | None:
        """Download the bundle as a worker would and re-check what is cheap: the sha256 of every
        file against the registered one, and the model's answers on its reference set. The
        reason it must not ship, or None; raises while the artifact store is unreachable."""
        folder = Path(tempfile.mkdtemp(prefix=f"verify-{event.version}-"))
        try:
            try:
                bundle = download_bundle(event, folder)
                OnnxPredictor(bundle).check_reference()
            except (BundleError, ReferenceMismatch) as exc:
                return f"{type(exc).__name__}: {exc}"
            return None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def mark_refused(self, target: Target, reason: str) -> None:
        tag(self.client, target.version, REFUSED, reason[:TAG_LIMIT])
        tag(self.client, target.version, REFUSED_AT, now())

    def mark_shipped(self, target: Target, previous: str | None, shipped_at: str) -> None:
        """When it shipped starts its probation; the version the fleet served before is where a
        rollback returns. That is the watcher's to say: an alias moved in the MLflow UI has no
        ``previous_production``, and one promoted over a refused version names that one."""
        tags = {"shipped_at": shipped_at}
        if previous and previous != target.event.version:
            tags["previous_production"] = previous
        # At once, not one after the other (written right after the event is sent).
        with ThreadPoolExecutor(len(tags), thread_name_prefix="tag") as pool:
            writes = [pool.submit(tag, self.client, target.version, *kv) for kv in tags.items()]
            for write in writes:
                write.result()

    def roll_back(self, name: str, alias: str, reason: str) -> AliasMove:
        return rollback(
            self.client, name, alias=alias, by="registry_watcher", reason=reason, automatic=True
        )
