"""``retrain`` on the real MLflow, PostgreSQL and Kafka: it trains once per set of inputs, again
when a parameter, the data or a training source file changes, on a new snapshot when enough
labelled feedback has come (or a drift alert fires), and any past snapshot comes back byte for
byte. The fast family on the repository's sample, three epochs: a training takes seconds.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import os
import shutil
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from mlflow import MlflowClient
from typer.testing import CliRunner, Result

from contracts import Alert, AlertStatus, KafkaSettings, Label, ReviewRequest, Source, encode
from contracts.reviewfiles import read_dataset
from deploy.local.launcher import LocalStack
from deploy.topics import ensure_topics
from export.__main__ import app as export_app
from training.__main__ import GATES_FAILED
from training.__main__ import app as training_app
from training.retrain import Decision, retrain
from training.settings import CODE_PACKAGES, ROOT, RetrainSettings, Settings
from training.snapshot import build, content_digest, normalize

SAMPLE = ROOT / "data" / "sample"
GOOD = ["lovely", "tasty", "kind", "great", "clean", "quick"]
BAD = ["cold", "rude", "slow", "dirty", "bland", "late"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def live_reviews(count: int, start: int) -> list[tuple[str, Label]]:
    """Made-up reviews, each text its own, half positive."""
    reviews: list[tuple[str, Label]] = []
    for i in range(start, start + count):
        words = GOOD if i % 2 else BAD
        text = f"visit {i}: the food was {words[i % 6]} and the staff {words[(i // 6) % 6]}"
        reviews.append((text, 1 if i % 2 else 0))
    return reviews


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A copy of the fingerprinted code and lock file, so a test can edit a source file."""
    root = tmp_path / "code"
    for package in CODE_PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copyfile(ROOT / "uv.lock", root / "uv.lock")
    return root


@pytest.fixture
def env(stack: LocalStack, code: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fast family on the sample (the gate floors suit 1,080 training reviews), a model,
    experiments and code root of this test's own; no statistics database unless a test adds it."""
    values = {
        "RS_TRAIN_TRAIN_PATH": str(SAMPLE / "train.csv.gz"),
        "RS_TRAIN_TEST_PATH": str(SAMPLE / "test.csv.gz"),
        "RS_TRAIN_EXPERIMENT": unique("test-retrain"),
        "RS_TRAIN_PROGRESS": "false",
        "RS_TRAIN_FAST__BUCKETS": str(1 << 16),
        "RS_TRAIN_FAST__EPOCHS": "3",
        "RS_TRAIN_FAST__BATCH_SIZE": "16",
        "RS_EXPORT_MODEL_NAME": unique("retrain"),
        "RS_EXPORT_ACCURACY_FLOOR": "0.75",
        "RS_EXPORT_BEHAVIOUR_MIN_PASS_RATE": "0.6",
        "RS_TRAIN_RETRAIN_DATA_EXPERIMENT": unique("test-data"),
        "RS_TRAIN_RETRAIN_CODE_ROOT": str(code),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in ("DATABASE_URL", "RS_DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    return values


def with_live_data(
    monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings, database_url: str, threshold: int
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RS_TRAIN_RETRAIN_MIN_NEW_FEEDBACK", str(threshold))
    for field in KafkaSettings.model_fields:
        if field.endswith("_topic"):
            monkeypatch.setenv(f"RS_KAFKA_{field.upper()}", getattr(kafka, field))


async def run_retrain(**options: str) -> Decision:
    """``retrain`` as the command runs it, with the settings of the environment (in a thread:
    it runs its own event loops)."""
    return await asyncio.to_thread(
        retrain, Settings(), RetrainSettings(), by="pytest", fresh_snapshot=options.get("fresh")
    )


async def command(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, training_app, list(args))


def client_of(stack: LocalStack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)


def trained(decision: Decision) -> str:
    assert decision.covered_by is None
    assert decision.trained is not None
    return decision.trained.run_id


async def test_retrain_trains_once_per_set_of_inputs(
    stack: LocalStack, env: dict[str, str], code: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    client = client_of(stack)
    first = await run_retrain()
    first_run = trained(first)
    assert first.changed == ["code", "data", "params", "lock"]  # no earlier run
    assert first.data.taken
    tags = client.get_run(first_run).data.tags
    assert tags["fingerprint"] == first.fingerprint.value
    assert tags["snapshot_digest"] == first.data.snapshot.digest
    assert tags["fingerprint.code"] == first.fingerprint.code
    assert tags["retrain.trigger"] == "inputs"
    assert tags["registered_version"] == "1"
    assert tags["gates"] == "passed"

    # The same inputs again, by the command: nothing trains, and it says which run covers them.
    again = await command("retrain")
    assert again.exit_code == 0, again.output
    assert f"up to date: run {first_run} already trained on these inputs" in again.output
    assert "(registered v1, gates passed)" in again.output
    assert f"reused snapshot {first.data.snapshot.digest}" in again.output
    experiment = client.get_experiment_by_name(env["RS_TRAIN_EXPERIMENT"])
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 1

    # A parameter changes: it trains again, and says what changed.
    monkeypatch.setenv("RS_TRAIN_FAST__EPOCHS", "4")
    params = await run_retrain()
    trained(params)
    assert params.changed == ["params"]
    assert params.data.snapshot.digest == first.data.snapshot.digest

    # A training source file changes (a comment is a change too).
    trainer = code / "training" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n# changed\n")
    source = await run_retrain()
    trained(source)
    assert source.changed == ["code"]
    covered = await run_retrain()
    assert covered.covered_by is not None
    assert covered.covered_by.info.run_id == trained(source)

    # The data changes: one more review in the train file makes a new snapshot.
    more = tmp_path / "train.csv.gz"
    lines = gzip.decompress((SAMPLE / "train.csv.gz").read_bytes())
    more.write_bytes(gzip.compress(lines + b'"A brand new review: great pasta",1,5,test\n'))
    monkeypatch.setenv("RS_TRAIN_TRAIN_PATH", str(more))
    data = await run_retrain()
    trained(data)
    assert data.changed == ["data"]
    assert data.data.taken
    assert data.data.snapshot.digest != first.data.snapshot.digest
    versions = client.search_model_versions(f"name = '{env['RS_EXPORT_MODEL_NAME']}'")
    assert len(versions) == 4


async def label(
    database_url: str, kafka: KafkaSettings, reviews: list[tuple[str, Label]], *,
    source: str = "rest", as_predictions: bool = False,
) -> None:  # fmt: skip
    """Labelled reviews as the stats processor stores them: feedback that came with its text,
    or (``as_predictions``) predictions whose requests are on the requests topic, labelled by
    feedback from ``source``."""
    given = datetime.now(UTC) - timedelta(minutes=5)
    connection = await asyncpg.connect(database_url)
    try:
        if not as_predictions:
            await connection.executemany(
                "INSERT INTO feedback (feedback_id, text, label, source, given_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                [(unique("f"), text, lab, source, given) for text, lab in reviews],
            )
            return
        ids = await send_requests(kafka, [text for text, _ in reviews])
        await connection.executemany(
            "INSERT INTO feedback (feedback_id, request_id, label, source, given_at, matched_at)"
            " VALUES ($1, $2, $3, $4, $5, $5)",
            [(f"{i}#f", i, lab, source, given) for i, (_, lab) in zip(ids, reviews, strict=True)],
        )
        await connection.executemany(
            "INSERT INTO predictions (request_id, model_name, model_version, label, probability,"
            " source, worker_id, submitted_at, predicted_at, latency_ms, true_label,"
            " true_label_given_at, true_label_feedback_id)"
            " VALUES ($1, 'm', '1', $2, 0.5, 'rest', 'w', $3, $3, 1.0, $2, $3, $4)",
            [(i, lab, given, f"{i}#f") for i, (_, lab) in zip(ids, reviews, strict=True)],
        )
    finally:
        await connection.close()


async def send_requests(kafka: KafkaSettings, texts: list[str]) -> list[str]:
    requests = [ReviewRequest(text=t, source=Source.REST) for t in texts]
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        for request in requests:
            await producer.send(kafka.requests_topic, encode(request))
        await producer.flush()
    finally:
        await producer.stop()
    return [r.request_id for r in requests]


def snapshot_rows(path: Path) -> dict[str, tuple[int, str]]:
    reader = csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode()))
    return {row["text"]: (int(row["label"]), row["source"]) for row in reader}


async def test_enough_new_feedback_makes_a_new_snapshot_and_version(
    stack: LocalStack, env: dict[str, str], kafka: KafkaSettings, database_url: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with_live_data(monkeypatch, kafka, database_url, threshold=200)
    client = client_of(stack)
    first = await run_retrain()
    trained(first)
    assert first.data.snapshot.live_labelled == 0

    # 150 labelled reviews: fewer than 200 since the snapshot, so it is reused; nothing trains.
    await label(database_url, kafka, live_reviews(150, start=0))
    quiet = await run_retrain()
    assert quiet.covered_by is not None
    assert quiet.data.snapshot == first.data.snapshot
    assert "150 new labelled reviews since it, fewer than 200" in quiet.data.reason

    # 50 more, labelled predictions whose texts are on the requests topic: 200 new.
    # Refused: a source not allowed, and a review of the test file (whatever its source).
    await label(database_url, kafka, live_reviews(50, start=150), as_predictions=True)
    await label(database_url, kafka, live_reviews(30, start=1000), source="replay")
    test_rows, _ = read_dataset(SAMPLE / "test.csv.gz")
    await label(database_url, kafka, [(test_rows[0].text, test_rows[0].label or 0)])
    fed = await run_retrain()
    fed_run = trained(fed)
    assert fed.data.taken
    assert "201 new labelled reviews since snapshot" in fed.data.reason
    assert fed.changed == ["data"]
    assert fed.data.snapshot.digest != first.data.snapshot.digest
    assert client.get_run(fed_run).data.tags["snapshot_digest"] == fed.data.snapshot.digest
    version = client.get_model_version(env["RS_EXPORT_MODEL_NAME"], "2")
    assert version.run_id == fed_run
    assert version.tags["gates"] in {"passed", "failed"}  # the gates judged it
    assert "gate.live_replay" in version.tags  # on this database's labelled reviews
    shown = await asyncio.to_thread(CliRunner().invoke, export_app, ["lineage", "2"])
    assert shown.exit_code == 0, shown.output
    assert f"data snapshot: {fed.data.snapshot.digest}" in shown.output
    assert "(changed: data; trigger: inputs)" in shown.output

    # The requests' texts leave the topic (here: another, empty one): a fresh snapshot still
    # holds those reviews, carried forward; the same data, nothing to train.
    elsewhere = kafka.prefixed(unique("t"))
    await ensure_topics(elsewhere)
    monkeypatch.setenv("RS_KAFKA_REQUESTS_TOPIC", elsewhere.requests_topic)
    kept = await run_retrain(fresh="the requests have left the topic")
    assert kept.data.taken
    assert kept.data.snapshot.digest == fed.data.snapshot.digest
    assert kept.covered_by is not None
    assert kept.covered_by.info.run_id == fed_run

    # What went into it: every allowed review, nothing refused, no test text.
    fetched = tmp_path / "fed.csv.gz"
    done = await command("snapshot", "--fetch", fed.data.snapshot.digest, "--out", str(fetched))
    assert done.exit_code == 0, done.output
    rows = snapshot_rows(fetched)
    allowed = live_reviews(200, start=0)
    assert all(rows[text] == (lab, "feedback:rest") for text, lab in allowed)
    assert not any(text in rows for text, _ in live_reviews(30, start=1000))
    test_texts = {row.text for row in test_rows}
    assert not {normalize(t) for t in test_texts} & {normalize(t) for t in rows}
    sample_train, _ = read_dataset(SAMPLE / "train.csv.gz")
    from_file = {normalize(r.text) for r in sample_train} - {normalize(t) for t in test_texts}
    assert len(rows) == len(from_file) + 200

    # The first snapshot, fetched by its digest, is byte for byte the one built back then.
    old = tmp_path / "first.csv.gz"
    done = await command("snapshot", "--fetch", first.data.snapshot.digest, "--out", str(old))
    assert done.exit_code == 0, done.output
    rebuilt = build(
        [("train.csv.gz", sample_train)], [], test_texts=test_texts,
        allowed_sources=("rest", "ws"),
    )  # fmt: skip
    assert old.read_bytes() == rebuilt.gzipped()
    assert content_digest(old.read_bytes()) == first.data.snapshot.digest
    missing = await command("snapshot", "--fetch", "0" * 64, "--out", str(tmp_path / "x"))
    assert missing.exit_code == 1
    assert "no snapshot" in missing.output


async def fire(kafka: KafkaSettings, name: str, status: AlertStatus) -> None:
    alert = Alert(
        name=name, status=status, severity="warning", starts_at=datetime.now(UTC),
        fingerprint=unique("fp"),
    )  # fmt: skip
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(kafka.alerts_topic, encode(alert), key=b"fp")
    finally:
        await producer.stop()


async def test_a_firing_drift_alert_takes_a_fresh_snapshot_and_retrains(
    stack: LocalStack, env: dict[str, str], kafka: KafkaSettings, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with_live_data(monkeypatch, kafka, database_url, threshold=200)
    monkeypatch.setenv("RS_TRAIN_RETRAIN_ALERTS_GROUP_ID", unique("retrain"))
    client = client_of(stack)
    first = await run_retrain()
    trained(first)
    await label(database_url, kafka, live_reviews(20, start=0))

    # Alerts that do not call for retraining: nothing new, the snapshot is reused.
    await fire(kafka, "ServiceDown", AlertStatus.FIRING)
    await fire(kafka, "DataDrift", AlertStatus.RESOLVED)
    calm = await command("retrain", "--on-alerts")
    assert calm.exit_code == 0, calm.output
    assert "up to date" in calm.output
    assert "20 new labelled reviews since it, fewer than 200" in calm.output

    # A drift alert fires: a fresh snapshot (with the 20 new reviews), a new version.
    await fire(kafka, "DataDrift", AlertStatus.FIRING)
    drift = await command("retrain", "--on-alerts")
    assert drift.exit_code in {0, GATES_FAILED}, drift.output
    assert "took snapshot" in drift.output
    assert "alert DataDrift" in drift.output
    assert "inputs changed (data): trained" in drift.output
    version = client.get_model_version(env["RS_EXPORT_MODEL_NAME"], "2")
    assert version.run_id is not None
    run_tags = client.get_run(version.run_id).data.tags
    assert run_tags["retrain.trigger"] == "alert DataDrift"

    # The alert was handled: the next scheduled run has nothing to do.
    after = await command("retrain", "--on-alerts")
    assert after.exit_code == 0, after.output
    assert "up to date" in after.output
    assert run_tags["fingerprint"] in after.output


async def test_the_follower_retrains_when_a_drift_alert_arrives(
    stack: LocalStack, env: dict[str, str], kafka: KafkaSettings, database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``retrain --follow``, a real process: an alert that does not call for retraining does
    nothing; a firing DataDrift runs ``retrain --on-alerts``, which takes a fresh snapshot."""
    with_live_data(monkeypatch, kafka, database_url, threshold=200)
    monkeypatch.setenv("RS_TRAIN_RETRAIN_ALERTS_GROUP_ID", unique("follow"))
    trained(await run_retrain())
    await label(database_url, kafka, live_reviews(20, start=0))
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "training", "retrain", "--follow", "--no-progress",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its retrain child is stopped with it
    )  # fmt: skip
    assert follower.stdout is not None
    output: list[str] = []

    async def until(text: str) -> None:
        while not any(text in line for line in output):
            line = await follower.stdout.readline()  # type: ignore[union-attr]
            assert line, "the follower ended:\n" + "".join(output)
            output.append(line.decode())

    try:
        await fire(kafka, "ServiceDown", AlertStatus.FIRING)
        await fire(kafka, "DataDrift", AlertStatus.FIRING)
        await asyncio.wait_for(until("ended with exit status"), timeout=300)
    finally:
        os.killpg(follower.pid, signal.SIGTERM)
        await follower.wait()
    log = "".join(output)
    assert "alert DataDrift calls for retraining" in log, log
    assert "ServiceDown" not in log.split("calls for retraining")[0].splitlines()[-1]
    assert "retrain for alert DataDrift ended with exit status 0" in log, log
    assert "took snapshot" in log, log
    assert "inputs changed (data): trained" in log, log
    version = client_of(stack).get_model_version(env["RS_EXPORT_MODEL_NAME"], "2")
    assert version.run_id is not None
    run_tags = client_of(stack).get_run(version.run_id).data.tags
    assert run_tags["retrain.trigger"] == "alert DataDrift"
