"""The stats processor's pure core, and its batch handling against fakes at the store port."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts import (
    DeadLetter,
    FailureKind,
    Feedback,
    Prediction,
    RequestFailed,
    Source,
    Timings,
    decode,
    encode,
)
from contracts.statistics import LATENCY_BUCKETS_MS, latency_bucket, latency_quantile
from runtime.records import Record
from stats.aggregates import (
    Deltas,
    FeedbackRow,
    LabelGiven,
    LabelMatch,
    PredictionRow,
    first_by,
    latest_labels,
)
from stats.batches import BatchProcessor, DeadLetterUnavailable
from stats.metrics import Metrics
from stats.settings import Settings
from stats.shadow import ShadowRow, shadow_row
from stats.store import RecordRejected, StoreUnavailable, WriteResult
from stats.windows import window_start

T0 = datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)


def prediction(
    request_id: str, *, label: int = 1, version: str = "1", at: datetime = T0
) -> Prediction:
    return Prediction(
        request_id=request_id,
        label=label,
        probability=0.9 if label else 0.1,
        model_name="m",
        model_version=version,
        worker_id="w-1",
        submitted_at=at - timedelta(milliseconds=30),
        predicted_at=at,
        source=Source.PRODUCER,
        timings=Timings(queue_ms=20.0, inference_ms=7.5, batch_size=4),
    )


# -- schema: latency buckets and quantiles ----------------------------------------------------


def test_latency_bucket_is_the_smallest_bound_at_or_above() -> None:
    assert latency_bucket(0.0) == 5.0
    assert latency_bucket(5.0) == 5.0
    assert latency_bucket(5.01) == 10.0
    assert latency_bucket(10_000.0) == 10_000.0
    assert latency_bucket(10_000.1) == math.inf
    assert LATENCY_BUCKETS_MS[-1] == math.inf


def test_latency_quantile_interpolates_inside_the_bucket() -> None:
    # 10 in (0, 5], 10 in (5, 10]: the median is the top of the first bucket.
    buckets = [(5.0, 10), (10.0, 10)]
    assert latency_quantile(buckets, 0.5) == pytest.approx(5.0)
    assert latency_quantile(buckets, 0.75) == pytest.approx(7.5)
    assert latency_quantile(buckets, 0.25) == pytest.approx(2.5)


def test_latency_quantile_in_the_infinite_bucket_answers_the_highest_finite_bound() -> None:
    assert latency_quantile([(10.0, 1), (math.inf, 9)], 0.99) == 10.0
    assert latency_quantile([(math.inf, 3)], 0.5) == 10_000.0


def test_latency_quantile_of_nothing_is_none_and_q_is_checked() -> None:
    assert latency_quantile([], 0.5) is None
    assert latency_quantile([(5.0, 0)], 0.5) is None
    with pytest.raises(ValueError, match="quantile"):
        latency_quantile([(5.0, 1)], 1.5)


# -- windows ------------------------------------------------------------------------------------


def test_windows_are_utc_aligned_whatever_the_input_zone() -> None:
    india = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert window_start("minute", india) == datetime(2024, 5, 1, 12, 34, tzinfo=UTC)
    assert window_start("hour", india) == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    edge = datetime(2024, 5, 1, 13, 0, 0, tzinfo=UTC)
    assert window_start("minute", edge) == edge
    assert window_start("hour", edge - timedelta(microseconds=1)) == datetime(
        2024, 5, 1, 12, 0, tzinfo=UTC
    )


# -- aggregates ---------------------------------------------------------------------------------


def test_deltas_sum_predictions_and_labels_per_version_and_window() -> None:
    deltas = Deltas()
    deltas.add_prediction(PredictionRow.from_message(prediction("a", label=1)))
    deltas.add_prediction(PredictionRow.from_message(prediction("b", label=0)))
    later = T0 + timedelta(minutes=1)
    deltas.add_prediction(PredictionRow.from_message(prediction("c", label=1, at=later)))
    deltas.add_prediction(PredictionRow.from_message(prediction("d", label=1, version="2")))
    deltas.add_label(LabelMatch("m", "1", T0, label=1, true_label=1))
    deltas.add_label(LabelMatch("m", "1", T0, label=0, true_label=1))

    rows = dict(deltas.window_rows())
    hour = rows[("m", "1", "hour", datetime(2024, 5, 1, 12, tzinfo=UTC))]
    assert (hour.predictions, hour.positives, hour.labelled, hour.correct) == (3, 2, 2, 1)
    assert hour.latency_ms_sum == pytest.approx(3 * 27.5)
    assert hour.latency_ms_max == pytest.approx(27.5)
    minute = rows[("m", "1", "minute", datetime(2024, 5, 1, 12, 34, tzinfo=UTC))]
    assert (minute.predictions, minute.labelled) == (2, 2)
    assert rows[("m", "2", "hour", datetime(2024, 5, 1, 12, tzinfo=UTC))].predictions == 1
    # Sorted keys: every transaction locks aggregate rows in the same order.
    keys = [key for key, _ in deltas.window_rows()]
    assert keys == sorted(keys)
    latency = deltas.latency_rows()
    assert sum(count for key, _, count in latency if key[2] == "hour") == 4
    assert {le for _, le, _ in latency} == {50.0}


def test_prediction_row_latency_is_what_the_worker_measured() -> None:
    row = PredictionRow.from_message(prediction("a"))
    assert (row.latency_ms, row.queue_ms, row.inference_ms, row.batch_size) == (27.5, 20.0, 7.5, 4)
    assert row.source == "producer"


def test_first_by_keeps_the_first_of_each_key_in_order() -> None:
    assert first_by(["a1", "b1", "a2", "c1", "b2"], lambda s: s[0]) == ["a1", "b1", "c1"]


def test_settings_have_the_agreed_prefix_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().port == 9102
    monkeypatch.setenv("RS_STATS_PORT", "9999")
    monkeypatch.setenv("RS_STATS_BATCH_MAX", "7")
    monkeypatch.setenv("RS_KAFKA_PREDICTIONS_TOPIC", "p.topic")
    settings = Settings()
    assert (settings.port, settings.batch_max, settings.kafka.predictions_topic) == (
        9999,
        7,
        "p.topic",
    )


# -- batches against fakes at the ports ---------------------------------------------------------


class FakeStore:
    """Records every write; fails as told: transient failures first, then refusals by key."""

    def __init__(self, *, unavailable: int = 0, refuse: set[str] | None = None) -> None:
        self.unavailable = unavailable
        self.refuse = refuse or set()
        self.writes: list[list[str]] = []

    async def write_predictions(self, batch: Sequence[PredictionRow]) -> WriteResult:
        return self._write([row.request_id for row in batch])

    async def write_feedback(self, batch: Sequence[FeedbackRow]) -> WriteResult:
        return self._write([row.feedback_id for row in batch])

    def _write(self, keys: list[str]) -> WriteResult:
        if self.unavailable:
            self.unavailable -= 1
            raise StoreUnavailable("connection refused")
        refused = self.refuse.intersection(keys)
        if refused:
            raise RecordRejected(f"invalid byte sequence in {sorted(refused)}")
        self.writes.append(keys)
        return WriteResult(inserted=len(keys), duplicates=0, labelled=0)

    async def write_shadow_predictions(self, batch: Sequence[ShadowRow]) -> WriteResult:
        return self._write([row.request_id for row in batch])

    async def purge_unmatched(self, older_than_s: float) -> int:
        return 0

    async def ping(self) -> None:
        return None


class FakeSink:
    def __init__(self, *, unavailable: int = 0) -> None:
        self.unavailable = unavailable
        self.letters: list[tuple[str, bytes | None, bytes]] = []

    async def send_all(self, letters: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        if self.unavailable:
            self.unavailable -= 1
            raise DeadLetterUnavailable("broker away")
        self.letters.extend(letters)


def records(topic: str, values: Sequence[bytes | None]) -> list[Record]:
    return [Record(topic, 0, offset, f"k{offset}".encode(), v) for offset, v in enumerate(values)]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_malformed_records_go_to_the_dlq_and_the_rest_in_one_write() -> None:
    store, sink, metrics = FakeStore(), FakeSink(), Metrics()
    batch = records(
        "t.predictions",
        [
            encode(prediction("a")),
            b"not json",
            None,
            b'{"schema_version": 1, "request_id": "x"}',
            encode(prediction("b")),
        ],
    )
    outcome = await BatchProcessor(store, sink, metrics).predictions(batch)

    assert store.writes == [["a", "b"]]
    assert (outcome.stored, outcome.dead_lettered) == (2, 3)
    assert [topic for topic, _, _ in sink.letters] == ["t.predictions.dlq"] * 3
    letters = [decode(value, DeadLetter) for _, _, value in sink.letters]
    assert [letter.offset for letter in letters] == [1, 2, 3]
    assert "not JSON" in letters[0].reason
    assert "tombstone" in letters[1].reason
    assert "invalid Prediction" in letters[2].reason
    assert "label" in letters[2].reason
    assert base64.b64decode(letters[0].value) == b"not json"
    assert {letter.error_type for letter in letters} == {"DecodeError"}
    assert {letter.service for letter in letters} == {"stats"}
    assert (
        sample(
            metrics, "rs_stats_dead_letters_total", topic="t.predictions", error_type="DecodeError"
        )
        == 3
    )
    assert sample(metrics, "rs_stats_records_total", kind="prediction", outcome="stored") == 2


async def test_shadow_predictions_stored_error_replies_ignored_garbage_dead_lettered() -> None:
    store, sink, metrics = FakeStore(), FakeSink(), Metrics()
    failed = RequestFailed(
        request_id="f",
        error=FailureKind.INVALID,
        reason="too long",
        worker_id="w",
        submitted_at=T0,
        source=Source.REPLAY,
    )
    batch = records(
        "t.predictions.shadow",
        [encode(prediction("a")), b"not json", encode(failed), encode(prediction("b"))],
    )
    outcome = await BatchProcessor(store, sink, metrics).shadow(batch)

    assert store.writes == [["a", "b"]]
    assert (outcome.stored, outcome.dead_lettered, outcome.ignored) == (2, 1, 1)
    ((topic, _, value),) = sink.letters
    assert topic == "t.predictions.shadow.dlq"
    assert "not JSON" in decode(value, DeadLetter).reason
    assert sample(metrics, "rs_stats_records_total", kind="shadow", outcome="stored") == 2


def test_a_shadow_row_keeps_what_the_comparison_needs() -> None:
    parsed = shadow_row(encode(prediction("a")))
    assert parsed is not None
    row = parsed[0]
    assert (row.request_id, row.model_version, row.label) == ("a", "1", 1)


async def test_a_database_outage_is_retried_until_the_write_succeeds() -> None:
    store, sink, metrics = FakeStore(unavailable=3), FakeSink(), Metrics()
    processor = BatchProcessor(store, sink, metrics, retry_max_backoff_s=0.05)
    outcome = await processor.predictions(records("t.p", [encode(prediction("a"))]))

    assert store.writes == [["a"]]
    assert outcome.stored == 1
    assert not sink.letters
    assert sample(metrics, "rs_stats_db_retries_total", kind="prediction") == 3
    assert sample(metrics, "rs_stats_db_up") == 1


async def test_a_record_the_database_refuses_goes_alone_to_the_dlq() -> None:
    store, sink, metrics = FakeStore(refuse={"bad"}), FakeSink(unavailable=1), Metrics()
    feedback = [
        Feedback(feedback_id=key, request_id=f"r-{key}", label=1, source=Source.REPLAY)
        for key in ("ok1", "bad", "ok2")
    ]
    processor = BatchProcessor(store, sink, metrics, retry_max_backoff_s=0.05)
    outcome = await processor.feedback(records("t.feedback", [encode(f) for f in feedback]))

    # The batch is refused, then written one record at a time: only "bad" is left out.
    assert store.writes == [["ok1"], ["ok2"]]
    assert (outcome.stored, outcome.dead_lettered) == (2, 1)
    (letter,) = [decode(value, DeadLetter) for _, _, value in sink.letters]
    assert letter.error_type == "RecordRejected"
    assert "invalid byte sequence" in letter.reason
    assert letter.offset == 1


async def test_an_unexpected_error_is_not_swallowed() -> None:
    class Broken(FakeStore):
        async def write_predictions(self, batch: Sequence[PredictionRow]) -> WriteResult:
            raise KeyError("bug")

    with pytest.raises(KeyError):
        await BatchProcessor(Broken(), FakeSink(), Metrics()).predictions(
            records("t.p", [encode(prediction("a"))])
        )


def test_throughput_counts_recent_records_only() -> None:
    metrics = Metrics(throughput_window_s=10.0)
    metrics.processed(50)
    metrics.processed(30)
    assert sample(metrics, "rs_stats_throughput_records_per_second") == pytest.approx(8.0)


def test_a_correction_moves_only_correct_and_a_first_label_counts_once() -> None:
    at = datetime(2026, 12, 2, 10, 30, 15, tzinfo=UTC)
    deltas = Deltas()
    deltas.add_label(LabelMatch("m", "1", at, label=1, true_label=1))  # first label: agrees
    deltas.add_label(LabelMatch("m", "1", at, label=1, true_label=0, previous_label=1))
    deltas.add_label(LabelMatch("m", "1", at, label=0, true_label=0, previous_label=1))
    for _, window in deltas.window_rows():  # the hour and the minute alike
        assert (window.labelled, window.correct) == (1, 1)  # +1, then -1, then +1


def test_the_latest_label_wins_whatever_the_order() -> None:
    t = datetime(2026, 12, 2, tzinfo=UTC)
    given = [
        LabelGiven("a", 1, t, "f2"),
        LabelGiven("a", 0, t, "f1"),  # same moment: the larger id wins
        LabelGiven("b", 0, t.replace(hour=1), "x"),
        LabelGiven("b", 1, t, "y"),
    ]
    assert [(g.request_id, g.label) for g in latest_labels(given)] == [("a", 1), ("b", 0)]
    assert latest_labels(reversed(given)) == latest_labels(given)
