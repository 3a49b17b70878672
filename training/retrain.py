"""``retrain``: train only when an input changed, on a data snapshot fed by live feedback.

1. The data: the latest stored snapshot of the same recipe (train and test files, label rule,
   allowed sources) is reused until the allowed sources have given ``min_new_feedback`` more
   labelled reviews since it was taken, or an alert asks for fresh data; otherwise a new
   snapshot is taken and stored (content-addressed, in MLflow).
2. The fingerprint of code, data, parameters and lock file (:mod:`training.fingerprint`).
3. A FINISHED run of the experiment with that fingerprint covers it: nothing to do. Same inputs
   make the same model (seeded), so a run whose gates failed covers it too: training again
   would fail again; changing an input is what retries.
4. Otherwise the pipeline trains on the snapshot, and its gates decide the alias as always.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow import MlflowClient
from mlflow.entities import Run

from contracts.reviewfiles import Row, file_digest, read_dataset
from training.feedback import count_allowed, live_labels
from training.fingerprint import PARTS, TAG, Fingerprint, fingerprint, sha256_json
from training.settings import RetrainSettings, Settings
from training.snapshot import Snapshot, build, carried_labels, file_name
from training.snapshot_store import DIGEST_TAG, SnapshotStore, StoredSnapshot
from training.tracking import image_tags

if TYPE_CHECKING:
    from training.pipeline import Outcome

log = logging.getLogger(__name__)

# Bumped when the way a snapshot is built changes (a recipe of another version is not reused).
SNAPSHOT_FORMAT = 1


@dataclass(frozen=True)
class Data:
    """The snapshot a retrain uses, why it was taken or reused, and where its file lies (a
    reused one is fetched only if it is trained on: most scheduled runs skip)."""

    snapshot: StoredSnapshot
    path: Path | None
    taken: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    fingerprint: Fingerprint
    data: Data
    covered_by: Run | None = None
    changed: list[str] = field(default_factory=list)  # parts changed since the last run
    trained: Outcome | None = None


def recipe(settings: Settings, policy: RetrainSettings) -> str:
    """What a snapshot is built from, other than the live labels themselves."""
    return sha256_json(
        {
            "format": SNAPSHOT_FORMAT,
            "train": file_digest(settings.train_path),
            "test": file_digest(settings.test_path),
            "data_format": settings.data_format,
            "label_rule": [settings.positive_min_stars, settings.drop_three_star],
            "skip_malformed": settings.skip_malformed,
            "sources": sorted(policy.feedback_sources),
        }
    )


def database_url(settings: Settings) -> str | None:
    url = settings.export.database_url
    return url.get_secret_value() if url is not None else None


def labelled_count(settings: Settings, policy: RetrainSettings) -> int:
    url = database_url(settings)
    return asyncio.run(count_allowed(url, policy.feedback_sources)) if url else 0


def take_snapshot(
    settings: Settings, policy: RetrainSettings, previous: Path | None = None
) -> Snapshot:
    """Build a snapshot from the files, every labelled live review (none without a database)
    and the live reviews of the ``previous`` snapshot file."""

    def rows(path: Path) -> list[Row]:
        found, _ = read_dataset(
            path,
            fmt=settings.data_format,
            rule=settings.label_rule,
            skip_malformed=settings.skip_malformed,
        )
        return found

    train, test = rows(settings.train_path), rows(settings.test_path)
    url = database_url(settings)
    live = (
        asyncio.run(
            live_labels(
                settings.export.kafka,
                url,
                scan=policy.request_scan,
                limit_s=policy.request_scan_limit_s,
            )
        )
        if url
        else []
    )
    if previous is not None:
        live += carried_labels(previous)
    snapshot = build(
        [(settings.train_path.name, train)],
        live,
        test_texts=[row.text for row in test],
        allowed_sources=policy.feedback_sources,
    )
    log.info("snapshot %s: %d reviews, %s", snapshot.digest, snapshot.rows, snapshot.counts)
    return snapshot


def store_new(
    settings: Settings, policy: RetrainSettings, store: SnapshotStore, workdir: Path
) -> tuple[StoredSnapshot, Path]:
    """Take a snapshot (carrying the last one of its recipe forward) and store it."""
    # Counted before reading: a label given meanwhile counts towards the next snapshot.
    count = labelled_count(settings, policy)
    last = store.latest(recipe(settings, policy))
    previous = None
    if last is not None:
        previous = store.fetch(last.digest, workdir / "previous" / file_name(last.digest))
    snapshot = take_snapshot(settings, policy, previous)
    stored = store.put(
        snapshot,
        recipe=recipe(settings, policy),
        live_labelled=count,
        manifest={"counts": snapshot.counts.as_dict(), "train_path": str(settings.train_path)},
    )
    return stored, snapshot.write(workdir)


def choose_data(
    settings: Settings,
    policy: RetrainSettings,
    store: SnapshotStore,
    workdir: Path,
    *,
    fresh: str | None,
) -> Data:
    """Reuse the last snapshot of this recipe, or take a new one (``fresh``: a reason to)."""
    last = store.latest(recipe(settings, policy))
    if last is not None and fresh is None:
        grown = labelled_count(settings, policy) - last.live_labelled
        if grown < policy.min_new_feedback:
            why = (
                f"reused snapshot {last.digest}: {grown} new labelled reviews since it, "
                f"fewer than {policy.min_new_feedback}"
            )
            return Data(last, None, taken=False, reason=why)
        fresh = f"{grown} new labelled reviews since snapshot {last.digest}"
    stored, path = store_new(settings, policy, store, workdir)
    why = fresh or "no snapshot of these files, rules and sources yet"
    return Data(stored, path, taken=True, reason=f"took snapshot {stored.digest}: {why}")


def finished_runs(client: MlflowClient, experiment: str, condition: str) -> list[Run]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(
        client.search_runs(
            [found.experiment_id],
            filter_string=f"{condition} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    )


def retrain(
    settings: Settings,
    retrain_settings: RetrainSettings,
    *,
    by: str | None = None,
    fresh_snapshot: str | None = None,
    trigger: str = "inputs",
) -> Decision:
    """Train when no finished run has these inputs' fingerprint; say which run has."""
    uri = settings.export.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    store = SnapshotStore(client, retrain_settings.data_experiment, tags=image_tags(settings))
    with tempfile.TemporaryDirectory() as tmp:
        data = choose_data(settings, retrain_settings, store, Path(tmp), fresh=fresh_snapshot)
        log.info("%s", data.reason)
        current = fingerprint(
            settings,
            snapshot_digest=data.snapshot.digest,
            test_digest=file_digest(settings.test_path),
            code_root=retrain_settings.code_root,
            code_packages=retrain_settings.code_packages,
        )
        covering = finished_runs(client, settings.experiment, f"tags.{TAG} = '{current.value}'")
        if covering:
            return Decision(current, data, covered_by=covering[0])
        last = finished_runs(client, settings.experiment, f"tags.{TAG} LIKE '%'")
        changed = current.changed_since(last[0].data.tags) if last else list(PARTS)
        tags = {
            **current.tags(),
            DIGEST_TAG: data.snapshot.digest,
            "snapshot_run_id": data.snapshot.run_id,
            "retrain.trigger": trigger,
            "retrain.changed": ",".join(changed),
        }
        from training.pipeline import run  # torch and the exporter: only when it trains

        path = data.path or store.fetch(
            data.snapshot.digest, Path(tmp) / file_name(data.snapshot.digest)
        )
        # The snapshot is the training file; its label rule is applied already.
        on_snapshot = settings.model_copy(
            update={"train_path": path, "data_format": "reviewstream", "skip_malformed": False}
        )
        outcome = run(on_snapshot, by=by, tags=tags)
    return Decision(current, data, changed=changed, trained=outcome)
