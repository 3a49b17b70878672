"""The producers against a real worker (``python -m workers``) on the real stack.

- bulk writes exactly one prediction per input row, each the model's answer for that row;
- a bulk run interrupted with Ctrl-C and run again answers every row exactly once;
- a replay of a labelled file reports a live accuracy equal to the model's offline accuracy.

The worker is started per the service contract (see PREAMBLE "Service contracts"): a bundle is
registered in MLflow under a fresh model name with the ``production`` alias, and the worker is
told that name, the test's topics and its own consumer group.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from mlflow import MlflowClient

from contracts import Feedback, KafkaSettings, ReviewRequest, Source, decode, encode
from contracts.reviewfiles import ReviewFile, shared_data
from deploy.local.launcher import ROOT, LocalStack, free_port
from deploy.local.processes import ServiceProcess
from export.registry import record_gates
from gateway import readmodel as queries
from inference import Bundle, OnnxPredictor
from inference.registry import register_bundle
from inference.synthetic import make_fast_bundle
from tests.reviewfiles import labelled_rows, write_labelled_csv_gz
from tests.serving import service_env, synthetic_gate
from tests.statsprocess import StatsProcess, wait_for
from tests.topicdump import dump_topic

pytestmark = pytest.mark.e2e

SHARED_TEST = shared_data("yelp/test.csv.gz")


@dataclass
class Worker:
    bundle: Bundle
    model_name: str
    version: str


@pytest.fixture
async def worker(stack: LocalStack, kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[Worker]:
    """A real worker serving a freshly registered fast bundle on this test's topics."""
    client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    name = f"e2e-producers-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    bundle = make_fast_bundle(tmp_path / "bundle", seed=11)
    version = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    record_gates(client, version, [synthetic_gate(passed=True)])
    client.set_registered_model_alias(name, "production", version.version)

    port = free_port()
    env = service_env(
        stack,
        kafka,
        RS_WORKER_MODEL_NAME=name,
        RS_WORKER_GROUP_ID=f"workers-{uuid.uuid4().hex[:8]}",
        RS_WORKER_PORT=port,
    )
    process = ServiceProcess("workers", env=env, log_path=tmp_path / "worker.log", port=port)
    async with process.running(timeout_s=120):
        yield Worker(bundle=bundle, model_name=name, version=str(version.version))


def producer_env(kafka: KafkaSettings) -> dict[str, str]:
    return {
        **os.environ,
        "RS_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "RS_KAFKA_REQUESTS_TOPIC": kafka.requests_topic,
        "RS_KAFKA_PREDICTIONS_TOPIC": kafka.predictions_topic,
        "RS_KAFKA_FEEDBACK_TOPIC": kafka.feedback_topic,
        "RS_PRODUCER_ANSWER_TIMEOUT_S": "30",
    }


async def run_producer(
    kafka: KafkaSettings, *args: str, interrupt_when: Path | None = None, lines: int = 0
) -> tuple[int, str]:
    """Run ``python -m producers ARGS``; with ``interrupt_when``, send SIGINT once that file
    has ``lines`` lines. Returns the exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "producers", *args, "--no-progress",
        cwd=ROOT, env=producer_env(kafka),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        if interrupt_when is not None:
            deadline = time.monotonic() + 120
            while not _has_lines(interrupt_when, lines):
                assert process.returncode is None, "the run ended before it could be interrupted"
                assert time.monotonic() < deadline, f"{interrupt_when} never reached {lines} lines"
                await asyncio.sleep(0.1)
            process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 300)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def _has_lines(path: Path, count: int) -> bool:
    return path.exists() and len(path.read_text().splitlines()) >= count


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_bulk_writes_one_prediction_per_input_row(
    worker: Worker, kafka: KafkaSettings, tmp_path: Path
) -> None:
    texts = [text for text, _ in labelled_rows(40)]
    source = tmp_path / "reviews.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    output = tmp_path / "predictions.jsonl"
    report_path = tmp_path / "report.json"

    code, stderr = await run_producer(
        kafka, "bulk", str(source), "-o", str(output), "--report-json", str(report_path)
    )
    assert code == 0, stderr
    report = json.loads(report_path.read_text())
    assert (report["sent"], report["answered"], report["failed"]) == (40, 40, 0)
    answers = read_jsonl(output)
    assert len(answers) == 40
    assert len({a["request_id"] for a in answers}) == 40
    assert sorted(int(str(a["row"])) for a in answers) == list(range(1, 41))
    expected = OnnxPredictor(worker.bundle).predict(texts)
    for answer in answers:
        row = int(str(answer["row"]))
        assert answer["model_name"] == worker.model_name
        assert answer["model_version"] == worker.version
        assert abs(float(str(answer["probability"])) - float(expected[row - 1])) < 1e-4


async def test_interrupted_bulk_run_again_answers_every_row_once(
    worker: Worker, kafka: KafkaSettings, tmp_path: Path
) -> None:
    source = tmp_path / "reviews.txt"
    source.write_text("".join(f"{text}\n" for text, _ in labelled_rows(300)))
    output = tmp_path / "predictions.csv"
    first = tmp_path / "first.json"
    second = tmp_path / "second.json"

    code, stderr = await run_producer(
        kafka, "bulk", str(source), "-o", str(output), "--rate", "40",
        "--report-json", str(first), interrupt_when=output, lines=31,
    )  # fmt: skip
    assert code == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    answered_first = len(output.read_text().splitlines()) - 1  # the CSV header
    assert 30 <= answered_first < 300
    assert json.loads(first.read_text())["answered"] == answered_first

    code, stderr = await run_producer(
        kafka, "bulk", str(source), "-o", str(output), "--report-json", str(second)
    )
    assert code == 0, stderr
    report = json.loads(second.read_text())
    assert report["skipped"] == answered_first
    assert report["sent"] == 300 - answered_first
    rows = output.read_text().splitlines()[1:]
    ids = [row.split(",")[0] for row in rows]
    assert len(ids) == 300
    assert len(set(ids)) == 300  # nothing answered twice


def _labelled_source(tmp_path: Path, count: int) -> Path:
    if SHARED_TEST.exists():
        return SHARED_TEST
    return write_labelled_csv_gz(tmp_path / "labelled.csv.gz", labelled_rows(count))


async def test_replay_of_the_test_file_yields_the_offline_accuracy_live_in_postgres(
    worker: Worker, kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    """The whole shared test file, replayed with the stats processor running: the live
    accuracy in PostgreSQL equals the model's offline accuracy on the same reviews."""
    source = _labelled_source(tmp_path, 300)
    rows = list(ReviewFile(source, require_label=True).rows())
    count = len(rows)
    probabilities = OnnxPredictor(worker.bundle).predict([row.text for row in rows])
    offline_correct = sum(
        int(probability >= 0.5) == row.label
        for probability, row in zip(probabilities, rows, strict=True)
    )
    report_path = tmp_path / "report.json"

    async with StatsProcess(
        kafka=kafka,
        database_url=database_url,
        group_id=f"stats-{uuid.uuid4().hex[:8]}",
        log_path=tmp_path / "stats.log",
    ) as stats:
        await stats.wait_ready()
        code, stderr = await run_producer(
            kafka, "replay", str(source), "--feedback-delay", "0.2",
            "--report-json", str(report_path),
        )  # fmt: skip
        assert code == 0, stderr
        report = json.loads(report_path.read_text())
        assert (report["sent"], report["answered"], report["labelled"]) == (count, count, count)
        assert report["correct"] == offline_correct

        conn = await asyncpg.connect(database_url)
        try:

            async def all_labelled() -> bool:
                found = await queries.live_accuracy(conn, model_name=worker.model_name)
                return bool(found) and found[0].labelled == count

            await wait_for(all_labelled, timeout_s=120, what=f"{count} labelled predictions")
            (live,) = await queries.live_accuracy(conn, model_name=worker.model_name)
        finally:
            await conn.close()

    assert live.model_version == worker.version
    assert live.correct == offline_correct
    assert live.accuracy == pytest.approx(offline_correct / count)
    print(f"live accuracy in PostgreSQL {live.accuracy:.4f} over {count} replayed reviews")
    feedback = await dump_topic(kafka, kafka.feedback_topic)
    assert len(feedback) == count
    assert {decode(r.value, Feedback).label for r in feedback} <= {0, 1}


async def test_a_label_on_a_kafka_request_is_feedback_and_corrections_count_once(
    worker: Worker, kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    """ReviewRequests with ``user_label`` straight onto the requests topic, as any Kafka
    producer may send them: one feedback row and one labelled prediction each; a later
    correction moves ``correct`` by exactly one; a replay of older feedback changes nothing."""
    labels = [1, 0, 1, 0, 1, None]
    requests = [
        ReviewRequest(text=f"Kafka review {i}: lovely or awful?", source=Source.PRODUCER,
                      user_label=label)
        for i, label in enumerate(labels)
    ]  # fmt: skip
    labelled = [r for r in requests if r.user_label is not None]

    async def summary(conn: asyncpg.Connection) -> tuple[int, int, int]:
        (acc,) = await queries.live_accuracy(conn, model_name=worker.model_name)
        overview = await queries.overview(conn)
        return acc.labelled, acc.correct, overview.with_label

    async with StatsProcess(
        kafka=kafka,
        database_url=database_url,
        group_id=f"stats-{uuid.uuid4().hex[:8]}",
        log_path=tmp_path / "stats.log",
    ) as stats:
        await stats.wait_ready()
        await produce(kafka, kafka.requests_topic, requests)
        conn = await asyncpg.connect(database_url)
        try:

            async def all_stored() -> bool:
                found = await conn.fetchval("SELECT count(*) FROM predictions")
                return bool(found == len(requests))

            await wait_for(all_stored, timeout_s=120, what="every prediction stored")
            rows = await conn.fetch("SELECT request_id, label, true_label FROM predictions")
            by_id = {r["request_id"]: r for r in rows}
            for request in requests:
                assert by_id[request.request_id]["true_label"] == request.user_label
            assert await conn.fetchval("SELECT count(*) FROM feedback") == len(labelled)
            correct = sum(by_id[r.request_id]["label"] == r.user_label for r in labelled)
            assert await summary(conn) == (len(labelled), correct, len(labelled))

            # "That's wrong" on the first one, then an old copy of its first label replayed.
            first = labelled[0]
            assert first.user_label is not None
            model_said = by_id[first.request_id]["label"]
            now = datetime.now(UTC)
            correction = Feedback(request_id=first.request_id, label=1 - first.user_label,
                                  source=Source.WS, given_at=now)  # fmt: skip
            stale = Feedback(request_id=first.request_id, label=first.user_label,
                             source=Source.REPLAY, given_at=now - timedelta(seconds=1))  # fmt: skip
            await produce(kafka, kafka.feedback_topic, [correction])
            moved = correct + (1 if 1 - first.user_label == model_said else -1)

            async def corrected() -> bool:
                return await summary(conn) == (len(labelled), moved, len(labelled))

            await wait_for(corrected, timeout_s=60, what="the correction counted")
            await produce(kafka, kafka.feedback_topic, [stale])

            async def stale_stored() -> bool:
                found = await conn.fetchval("SELECT count(*) FROM feedback")
                return bool(found == len(labelled) + 2)

            await wait_for(stale_stored, timeout_s=60, what="the stale feedback stored")
            assert await summary(conn) == (len(labelled), moved, len(labelled))
        finally:
            await conn.close()


async def produce(
    kafka: KafkaSettings, topic: str, messages: list[ReviewRequest] | list[Feedback]
) -> None:
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        for message in messages:
            key = message.request_id or ""
            await producer.send_and_wait(topic, encode(message), key=key.encode())
    finally:
        await producer.stop()
