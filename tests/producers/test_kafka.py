"""The producers on the real broker: replay at a rate, topic-range replay, bulk resume, Ctrl-C.

What needs a real worker (answers, accuracy, bulk output) is in tests/producers/test_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from contracts import (
    Feedback,
    KafkaSettings,
    Prediction,
    ReviewRequest,
    Source,
    Timings,
    decode,
    encode,
)
from contracts.reviewfiles import ReviewFile, Row, file_digest
from deploy.local.launcher import ROOT
from producers.bulk import BulkOptions, run_bulk
from producers.errors import KafkaUnavailable
from producers.kafka import TopicRange
from producers.output import PredictionWriter
from producers.replay import ReplayOptions, replay_file, replay_topic
from producers.settings import Settings
from tests.reviewfiles import labelled_rows, write_labelled_csv_gz
from tests.topicdump import dump_topic


def producer_settings(
    kafka: KafkaSettings, *, answer_timeout_s: float = 30.0, connect_timeout_s: float = 10.0
) -> Settings:
    return Settings(
        kafka=kafka, connect_timeout_s=connect_timeout_s, answer_timeout_s=answer_timeout_s
    )


async def test_replay_at_a_set_rate_sends_requests_then_their_labels(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    rows = labelled_rows(30)
    labels = dict(rows)
    path = write_labelled_csv_gz(tmp_path / "stream.csv.gz", rows, bad=2)
    rate, delay = 20.0, 0.5
    report = await replay_file(
        producer_settings(kafka),
        ReviewFile(path, require_label=True),
        ReplayOptions(rate=rate, feedback_delay_s=delay, wait=False, progress=False),
    )
    assert (report.rows, report.sent, report.failed, report.feedback_sent) == (30, 30, 0, 30)
    assert report.bad_rows == 2
    assert [str(bad) for bad in report.bad] == ["line 32: missing text", "line 33: missing text"]

    requests = await dump_topic(kafka, kafka.requests_topic)
    feedback = await dump_topic(kafka, kafka.feedback_topic)
    assert len(requests) == 30
    assert len(feedback) == 30
    sent = {}
    for record in requests:
        request = decode(record.value, ReviewRequest)
        assert record.key == request.request_id.encode()
        assert request.source is Source.REPLAY
        sent[request.request_id] = (request.text, record.timestamp)
    assert sorted(text for text, _ in sent.values()) == sorted(labels)
    for record in feedback:
        answer = decode(record.value, Feedback)
        assert answer.request_id in sent
        assert record.key == answer.request_id.encode()
        assert answer.source is Source.REPLAY
        text, sent_at = sent[answer.request_id]
        assert answer.label == labels[text]
        assert record.timestamp - sent_at >= delay * 1000 * 0.9  # the label comes later
    assert {decode(r.value, Feedback).request_id for r in feedback} == set(sent)

    # The achieved rate, from the broker's record timestamps; generous: the machine is shared.
    stamps = sorted(record.timestamp for record in requests)
    achieved = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000)
    print(f"replay at {rate}/s: achieved {achieved:.1f}/s from record timestamps")
    assert rate * 0.5 <= achieved <= rate * 1.5


async def test_replay_shuffles_with_a_seed_and_stops_at_the_limit(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    rows = labelled_rows(40)
    path = write_labelled_csv_gz(tmp_path / "stream.csv.gz", rows)
    options = ReplayOptions(shuffle=True, seed=7, limit=10, feedback=False, wait=False)
    report = await replay_file(
        producer_settings(kafka), ReviewFile(path, require_label=True), options
    )
    assert (report.rows, report.sent, report.feedback_sent) == (10, 10, 0)
    requests = await dump_topic(kafka, kafka.requests_topic)
    texts = [decode(r.value, ReviewRequest).text for r in requests]
    assert len(set(texts)) == 10
    assert set(texts) <= {text for text, _ in rows}
    assert set(texts) != {text for text, _ in rows[:10]}  # seed 7 does not keep the head
    assert await dump_topic(kafka, kafka.feedback_topic) == []


async def produce_requests(
    kafka: KafkaSettings, batches: list[list[ReviewRequest]], timestamps: list[int]
) -> None:
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        for batch, stamp in zip(batches, timestamps, strict=True):
            for request in batch:
                await producer.send_and_wait(
                    kafka.requests_topic,
                    encode(request),
                    key=request.request_id.encode(),
                    timestamp_ms=stamp,
                )
    finally:
        await producer.stop()


def originals(prefix: str, count: int) -> list[ReviewRequest]:
    return [
        ReviewRequest(
            request_id=f"{prefix}-{i}",
            text=f"{prefix} review {i}",
            source=Source.REST,
            user_label=i % 2,
        )
        for i in range(count)
    ]


async def test_topic_range_replay_by_timestamps_resends_exactly_that_range(
    kafka: KafkaSettings,
) -> None:
    now = int(time.time() * 1000)
    batches = [originals("before", 6), originals("inside", 6), originals("after", 6)]
    stamps = [now - 30_000, now - 20_000, now - 10_000]
    await produce_requests(kafka, batches, stamps)

    selection = TopicRange(
        topic=kafka.requests_topic,
        since=_moment(stamps[1]),
        until=_moment(stamps[2]),
    )
    report = await replay_topic(
        producer_settings(kafka),
        selection,
        ReplayOptions(feedback_delay_s=0, wait=False, progress=False),
    )
    assert (report.rows, report.sent, report.feedback_sent, report.bad_rows) == (6, 6, 6, 0)

    everything = [
        decode(r.value, ReviewRequest) for r in await dump_topic(kafka, kafka.requests_topic)
    ]
    replayed = [r for r in everything if r.source is Source.REPLAY]
    assert sorted(r.text for r in replayed) == sorted(r.text for r in batches[1])
    assert not {r.request_id for r in replayed} & {r.request_id for r in batches[1]}  # new ids
    labels = {r.request_id: r.user_label for r in replayed}
    original = {r.text: r.user_label for r in batches[1]}
    assert labels == {r.request_id: original[r.text] for r in replayed}  # kept from the originals
    feedback = [decode(r.value, Feedback) for r in await dump_topic(kafka, kafka.feedback_topic)]
    assert {f.request_id: f.label for f in feedback} == labels


async def test_topic_range_replay_by_offsets_keeps_ids_when_asked(kafka: KafkaSettings) -> None:
    batch = originals("req", 12)
    await produce_requests(kafka, [batch], [int(time.time() * 1000)])
    before = await dump_topic(kafka, kafka.requests_topic)
    partition_0 = sorted((r for r in before if r.partition == 0), key=lambda r: r.offset)
    assert len(partition_0) >= 3, "12 keys over 3 partitions: partition 0 holds a few"
    expected = [decode(r.value, ReviewRequest).request_id for r in partition_0[1:3]]

    selection = TopicRange(
        topic=kafka.requests_topic, partitions=(0,), start_offset=1, end_offset=3
    )
    report = await replay_topic(
        producer_settings(kafka),
        selection,
        ReplayOptions(keep_ids=True, feedback=False, wait=False, progress=False),
    )
    assert (report.rows, report.sent) == (2, 2)
    after = await dump_topic(kafka, kafka.requests_topic)
    assert len(after) == len(before) + 2
    replayed = [decode(r.value, ReviewRequest) for r in after]
    assert sorted(r.request_id for r in replayed if r.source is Source.REPLAY) == sorted(expected)


async def test_bulk_ids_are_deterministic_and_answered_rows_are_skipped(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    """No worker here: the output file of an earlier run names rows 1-4 as answered."""
    source = tmp_path / "reviews.txt"
    source.write_text("".join(f"plain review number {i}\n" for i in range(1, 13)))
    identity = file_digest(source)[:16]
    output = tmp_path / "predictions.jsonl"
    with PredictionWriter(output) as writer:
        for n in range(1, 5):
            writer.write(_earlier_answer(f"{identity}-{n}"), Row(n, f"line {n}", "x", line=n))

    report = await run_bulk(
        producer_settings(kafka, answer_timeout_s=1.0),
        ReviewFile(source),
        BulkOptions(output=output, progress=False),
    )
    assert (report.rows, report.skipped, report.sent, report.answered) == (12, 4, 8, 0)
    assert report.timed_out == 8  # nobody answers: the run says so instead of hanging
    assert report.exit_code == 3

    requests = [
        decode(r.value, ReviewRequest) for r in await dump_topic(kafka, kafka.requests_topic)
    ]
    assert sorted(r.request_id for r in requests) == sorted(f"{identity}-{n}" for n in range(5, 13))
    assert all(r.source is Source.PRODUCER for r in requests)
    assert {r.request_id: r.text for r in requests}[f"{identity}-7"] == "plain review number 7"


async def test_bulk_to_a_missing_topic_is_a_clear_error(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    source = tmp_path / "reviews.txt"
    source.write_text("a review\n")
    missing = kafka.model_copy(update={"requests_topic": "no-such-topic"})
    with pytest.raises(KafkaUnavailable, match="no-such-topic do not exist"):
        await run_bulk(
            producer_settings(missing, connect_timeout_s=1),
            ReviewFile(source),
            BulkOptions(progress=False),
        )


async def test_ctrl_c_stops_a_replay_cleanly_and_flushes_its_feedback(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    path = write_labelled_csv_gz(tmp_path / "stream.csv.gz", labelled_rows(200))
    summary = tmp_path / "report.json"
    env = {
        **os.environ,
        "RS_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "RS_KAFKA_REQUESTS_TOPIC": kafka.requests_topic,
        "RS_KAFKA_FEEDBACK_TOPIC": kafka.feedback_topic,
        "RS_KAFKA_PREDICTIONS_TOPIC": kafka.predictions_topic,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "producers", "replay", str(path), "--rate", "20", "--no-wait",
        "--feedback-delay", "60", "--no-progress", "--report-json", str(summary),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(await dump_topic(kafka, kafka.requests_topic)) < 5:
            assert process.returncode is None, "the replay ended early"
            assert time.monotonic() < deadline, "the replay sent nothing"
            await asyncio.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 60)
        stderr = err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    report = json.loads(summary.read_text())
    assert report["interrupted"] is True
    assert 5 <= report["sent"] < 200
    requests = await dump_topic(kafka, kafka.requests_topic)
    feedback = await dump_topic(kafka, kafka.feedback_topic)
    assert len(requests) == report["sent"]
    # Feedback was due in 60 s; stopping sent it at once, so every request keeps its label.
    assert len(feedback) == report["feedback_sent"] == report["sent"]


def _moment(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _earlier_answer(request_id: str) -> Prediction:
    return Prediction(
        request_id=request_id,
        label=1,
        probability=0.9,
        model_name="reviewstream-sentiment",
        model_version="1",
        worker_id="earlier-run",
        submitted_at=datetime.now(UTC),
        source=Source.PRODUCER,
        timings=Timings(queue_ms=0, inference_ms=1, batch_size=1),
    )
