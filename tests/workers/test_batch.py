"""The worker's pure core: decoding a fetched batch, building replies, gathering micro-batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import FailureKind, Prediction, RequestFeatures, ReviewRequest, Source, encode
from runtime.records import Record
from workers.batch import Accepted, Answer, collect, failure, next_offsets, predictions, triage


def record(value: bytes | None, offset: int = 0, partition: int = 0) -> Record:
    return Record("requests", partition, offset, b"key", value)


def request(text: str = "Lovely food.", **fields: object) -> ReviewRequest:
    return ReviewRequest(text=text, source=Source.PRODUCER, **fields)


def test_triage_keeps_good_requests_and_says_why_the_others_are_refused() -> None:
    good = request("Great tacos")
    records = [
        record(b"\xff\xfe not utf-8", 0),
        record(b"{not json", 1),
        record(b'{"schema_version": 1, "text": "no source"}', 2),
        record(encode(request("   \n ")), 3),
        record(encode(request("x" * 101)), 4),
        record(None, 5),
        record(encode(good), 6),
        record(b'{"schema_version": 3, "text": "future", "source": "rest"}', 7),
    ]
    accepted, rejected = triage(records, max_text_chars=100)
    assert [a.request for a in accepted] == [good]
    assert [a.record.offset for a in accepted] == [6]
    reasons = {r.record.offset: r.reason for r in rejected}
    assert "not UTF-8" in reasons[0]
    assert "not JSON" in reasons[1]
    assert "source" in reasons[2]
    assert reasons[3] == "text is empty (only whitespace)"
    assert reasons[4] == "text has 101 characters, the limit is 100"
    assert "tombstone" in reasons[5]
    assert "schema_version" in reasons[7]
    types = {r.record.offset: r.error_type for r in rejected}
    assert types[0] == "DecodeError"
    assert types[3] == "InvalidRequest"

    # The decoded ones are answered at once with an error reply; the others have no sender.
    replies = [
        f
        for r in rejected
        if (f := failure(r, worker_id="w-1", model_name="m", model_version="7")) is not None
    ]
    too_long = next(r for r in rejected if r.record.offset == 4)
    assert too_long.request is not None
    assert [f.request_id for f in replies] == [
        r.request.request_id for r in rejected if r.request is not None
    ]
    (answer,) = (f for f in replies if f.request_id == too_long.request.request_id)
    assert (answer.error, answer.reason) == (FailureKind.INVALID, reasons[4])
    assert (answer.model_name, answer.model_version, answer.worker_id) == ("m", "7", "w-1")


def test_one_prediction_per_request_naming_model_worker_and_timings() -> None:
    submitted = datetime(2025, 1, 1, tzinfo=UTC)
    items = [
        Accepted(record(b"", 0), request("good", submitted_at=submitted, reply_to="gw-1")),
        Accepted(record(b"", 1), request("bad", submitted_at=submitted)),
    ]
    features = RequestFeatures(words=1, unknown_share=0.5)
    replies = predictions(
        [Answer(items[0], 0.5, features), Answer(items[1], 0.4999)],
        model_name="m",
        model_version="7",
        worker_id="w-1",
        threshold=0.5,
        picked_at=submitted + timedelta(milliseconds=250),
        inference_ms=3.0,
    )
    assert [p.label for p in replies] == [1, 0]
    assert [p.request_id for p in replies] == [i.request.request_id for i in items]
    first = replies[0]
    assert isinstance(first, Prediction)
    assert (first.model_name, first.model_version, first.worker_id) == ("m", "7", "w-1")
    assert first.reply_to == "gw-1"
    assert first.source == Source.PRODUCER
    assert first.timings.queue_ms == pytest.approx(250)
    assert first.timings.batch_size == 2
    assert first.timings.inference_ms == 3.0
    assert first.user_label is None
    assert first.features == features
    assert replies[1].features is None  # a version without a profile: unmonitored


def test_the_senders_label_travels_with_the_prediction() -> None:
    item = Accepted(record(b"", 0), request("good").model_copy(update={"user_label": 0}))
    now = datetime.now(UTC)
    (reply,) = predictions([Answer(item, 0.9)], model_name="m", model_version="7", worker_id="w",
                           threshold=0.5, picked_at=now, inference_ms=1.0)  # fmt: skip
    assert (reply.label, reply.user_label, reply.schema_version) == (1, 0, 3)


def test_a_clock_behind_the_sender_never_gives_a_negative_queue_time() -> None:
    now = datetime.now(UTC)
    item = Accepted(record(b""), request(submitted_at=now + timedelta(seconds=5)))
    (reply,) = predictions(
        [Answer(item, 0.9)], model_name="m", model_version="1", worker_id="w",
        threshold=0.5, picked_at=now, inference_ms=1.0,
    )  # fmt: skip
    assert reply.timings.queue_ms == 0


def test_commit_offsets_are_last_plus_one_per_partition() -> None:
    records = [record(b"", 5, 0), record(b"", 3, 1), record(b"", 6, 0), record(b"", 4, 1)]
    assert next_offsets(records) == {("requests", 0): 7, ("requests", 1): 5}


class FakeFetch:
    """Hands out prepared chunks, advancing a fake clock by the time each call waited."""

    def __init__(self, chunks: list[list[Record]], *, wait_s: float = 0.001) -> None:
        self.chunks = chunks
        self.now = 0.0
        self.wait_s = wait_s
        self.calls: list[tuple[float, int]] = []

    async def __call__(self, timeout_s: float, max_records: int) -> list[Record]:
        self.calls.append((timeout_s, max_records))
        if not self.chunks:
            self.now += timeout_s
            return []
        self.now += self.wait_s
        chunk = self.chunks.pop(0)
        assert len(chunk) <= max_records
        return chunk

    def clock(self) -> float:
        return self.now


def chunk(n: int, start: int = 0) -> list[Record]:
    return [record(b"", start + i) for i in range(n)]


async def test_collect_fills_a_batch_from_several_fetches_up_to_the_max_size() -> None:
    fetch = FakeFetch([chunk(3), chunk(3, 3), chunk(2, 6)])
    batch = await collect(fetch, max_size=8, max_wait_s=1.0, idle_timeout_s=0.2, clock=fetch.clock)
    assert [r.offset for r in batch] == list(range(8))
    assert [c[1] for c in fetch.calls] == [8, 5, 2]  # never asks for more than fits


async def test_collect_returns_what_came_within_the_wait() -> None:
    fetch = FakeFetch([chunk(2)])
    batch = await collect(
        fetch, max_size=64, max_wait_s=0.01, idle_timeout_s=0.2, clock=fetch.clock
    )
    assert len(batch) == 2
    assert fetch.calls[0] == (0.2, 64)
    assert fetch.calls[1][0] == pytest.approx(0.01)  # waits from the first record on


async def test_collect_with_no_wait_takes_only_the_first_fetch() -> None:
    fetch = FakeFetch([chunk(2), chunk(2, 2)])
    batch = await collect(fetch, max_size=64, max_wait_s=0.0, idle_timeout_s=0.2, clock=fetch.clock)
    assert len(batch) == 2
    assert len(fetch.calls) == 1


async def test_collect_when_idle_returns_nothing() -> None:
    fetch = FakeFetch([])
    assert (
        await collect(fetch, max_size=8, max_wait_s=1, idle_timeout_s=0.2, clock=fetch.clock) == []
    )
