"""Data snapshots kept in MLflow, content-addressed: one run per snapshot taken, in the data
experiment, tagged with the snapshot's digest and artifact ``snapshot/<digest>.csv.gz``.

Why MLflow and not DVC: MLflow is already the system of record every training run writes to,
and its artifact store (a folder, S3, GCS...) is reachable from wherever training runs (a
CronJob, CI), with no git checkout, remote or credentials of its own. Content addressing is
the part of DVC needed here, and a digest in the artifact's name and a tag to search by gives
it: :meth:`SnapshotStore.fetch` finds any past version by digest and checks the bytes.

A run also records the *recipe* (the digests of the files and the rules that built it) and how
many labelled live reviews the allowed sources had given then: the next ``retrain`` reuses the
latest snapshot of the same recipe until enough new labels have come.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run

from training.snapshot import Snapshot, content_digest, file_name

DIGEST_TAG = "snapshot_digest"
RECIPE_TAG = "snapshot.recipe"
LIVE_TAG = "snapshot.live_labelled"
FOLDER = "snapshot"


class SnapshotNotFound(LookupError):
    """No stored snapshot has this digest (or its bytes do not match it)."""


@dataclass(frozen=True)
class StoredSnapshot:
    digest: str
    run_id: str
    live_labelled: int

    @classmethod
    def of(cls, run: Run) -> StoredSnapshot:
        tags = run.data.tags
        return cls(tags[DIGEST_TAG], run.info.run_id, int(tags.get(LIVE_TAG, "0")))


class SnapshotStore:
    def __init__(
        self, client: MlflowClient, experiment: str, *, tags: Mapping[str, str] | None = None
    ) -> None:
        self.client = client
        self.experiment = experiment
        # On every snapshot run it creates, beside its own (the image it was taken in).
        self.tags = dict(tags or {})

    def _experiment_id(self, *, create: bool) -> str | None:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        return str(self.client.create_experiment(self.experiment)) if create else None

    def _search(self, filter_string: str) -> list[Run]:
        experiment_id = self._experiment_id(create=False)
        if experiment_id is None:
            return []
        return list(
            self.client.search_runs(
                [experiment_id],
                filter_string=f"{filter_string} and attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
        )

    def put(
        self, snapshot: Snapshot, *, recipe: str, live_labelled: int, manifest: dict[str, object]
    ) -> StoredSnapshot:
        """Store a snapshot taken now (a run of its own, even when its digest is known: the
        run says when it was taken and how many live labels there were)."""
        experiment_id = self._experiment_id(create=True)
        assert experiment_id is not None
        digest = snapshot.digest
        tags = {
            **self.tags,
            DIGEST_TAG: digest,
            RECIPE_TAG: recipe,
            LIVE_TAG: str(live_labelled),
            "snapshot.rows": str(snapshot.rows),
            "mlflow.runName": f"snapshot-{digest[:12]}",
        }
        run_id = self.client.create_run(experiment_id, tags=tags).info.run_id
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / FOLDER
            snapshot.write(folder)
            (folder / f"{digest}.json").write_text(
                json.dumps({"digest": digest, "recipe": recipe, **manifest}, indent=1)
            )
            self.client.log_artifacts(run_id, str(folder), FOLDER)
        self.client.set_terminated(run_id)  # FINISHED: only a complete snapshot is found
        return StoredSnapshot(digest, run_id, live_labelled)

    def latest(self, recipe: str) -> StoredSnapshot | None:
        """The snapshot taken last with this recipe."""
        runs = self._search(f"tags.`{RECIPE_TAG}` = '{recipe}'")
        return StoredSnapshot.of(runs[0]) if runs else None

    def fetch(self, digest: str, out: Path) -> Path:
        """The stored file of snapshot ``digest``, byte for byte, written to ``out``."""
        runs = self._search(f"tags.{DIGEST_TAG} = '{digest}'")
        if not runs:
            raise SnapshotNotFound(f"no snapshot {digest} in experiment {self.experiment}")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(
                self.client.download_artifacts(
                    runs[0].info.run_id, f"{FOLDER}/{file_name(digest)}", tmp
                )
            )
            if content_digest(local.read_bytes()) != digest:
                raise SnapshotNotFound(f"the stored snapshot {digest} does not match its digest")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, out)
        return out
