"""The gateway's pure core: bounded pending replies, the classifier's tickets, settings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts import FailureKind, Prediction, RequestFailed, ReviewRequest, Source
from gateway.classifier import Classifier, Idempotency
from gateway.db import windows_since
from gateway.errors import (
    KafkaUnavailable,
    Overloaded,
    ReplyTimeout,
    ValidationFailed,
    WorkerRefused,
)
from gateway.idempotency import RememberedAnswers, check_key
from gateway.metrics import Metrics
from gateway.replies import Replies
from gateway.schemas import ReviewIn
from gateway.settings import Settings
from tests.gateway.memory import MemoryBus, prediction_for


def request(text: str = "ok") -> ReviewRequest:
    return ReviewRequest(text=text, source=Source.REST, reply_to="me")


async def test_reserve_is_all_or_nothing_within_the_bound() -> None:
    replies = Replies(3, retry_after_s=2)
    replies.reserve(["a", "b"])
    with pytest.raises(Overloaded) as refused:
        replies.reserve(["c", "d"])
    assert refused.value.retry_after == 2
    assert replies.in_flight == 2
    replies.reserve(["c"])
    assert replies.in_flight == 3


async def test_one_key_holds_at_most_its_share_of_the_slots() -> None:
    replies = Replies(6, per_owner=4, retry_after_s=2)
    replies.reserve(["a1", "a2", "a3"], "key-a")
    with pytest.raises(Overloaded, match="limit 4 per key") as refused:
        replies.reserve(["a4", "a5"], "key-a")
    assert refused.value.retry_after == 2
    replies.reserve(["b1", "b2"], "key-b")  # another key still gets room
    replies.reserve(["a1"], "key-a")  # a retry of a pending id takes no more room
    replies.reserve(["a4"], "key-a")
    with pytest.raises(Overloaded, match="limit 6"):
        replies.reserve(["b3"], "key-b")  # the total bound still holds
    replies.release(["a1", "a1", "a2"])  # a1's two waiters, then a2
    assert replies.in_flight == 4
    replies.reserve(["a5", "a6"], "key-a")  # freed slots count for their key again
    replies.release(["b1"])
    with pytest.raises(Overloaded, match="per key"):
        replies.reserve(["a7"], "key-a")  # room in total, none left in key-a's share
    replies.reserve(["x"], None)  # open mode: no key, only the total
    assert replies.in_flight == 6


async def test_resolve_only_what_is_awaited_and_only_once() -> None:
    replies = Replies(10, retry_after_s=1)
    first = request()
    [future] = replies.reserve([first.request_id])
    assert not replies.resolve(prediction_for(request()))  # someone else's id
    assert replies.resolve(prediction_for(first, label=0))
    assert not replies.resolve(prediction_for(first))  # at-least-once: a duplicate
    assert future.result().label == 0
    replies.release([first.request_id])
    assert replies.in_flight == 0
    assert not replies.resolve(prediction_for(first))  # late


async def test_release_cancels_an_unanswered_wait() -> None:
    replies = Replies(10, retry_after_s=1)
    [future] = replies.reserve(["x"])
    replies.release(["x"])
    assert future.cancelled()


def classifier(bus_up: bool = True, timeout_s: float = 0.2) -> tuple[Classifier, MemoryBus]:
    metrics = Metrics()
    replies = Replies(4, retry_after_s=1)
    bus = MemoryBus(replies.resolve, metrics)
    bus.up = bus_up
    core = Classifier(bus, replies, metrics, instance_id="gw-1", reply_timeout_s=timeout_s,
                      answers=answers(), no_model_retry_after_s=5)  # fmt: skip
    return core, bus


def answers() -> RememberedAnswers:
    return RememberedAnswers(ttl_s=3600, max_entries=1000)


async def test_a_failed_publish_frees_its_slots() -> None:
    core, _ = classifier(bus_up=False)
    with pytest.raises(KafkaUnavailable):
        await core.submit([ReviewIn(text="a"), ReviewIn(text="b")], Source.REST, owner=None)
    assert core.replies.in_flight == 0


async def test_timeout_names_the_missing_requests_and_frees_the_slots() -> None:
    core, bus = classifier()
    ticket = await core.submit([ReviewIn(text="a"), ReviewIn(text="b")], Source.REST, owner=None)
    bus.deliver(prediction_for(bus.requests[0]))
    with pytest.raises(ReplyTimeout) as timeout:
        await ticket.wait()
    assert "1 of 2 reviews within 0.2 s" in timeout.value.message
    assert timeout.value.details == [
        {"field": "request_id", "problem": f"no reply for {bus.requests[1].request_id}"}
    ]
    assert core.replies.in_flight == 0
    assert {r.reply_to for r in bus.requests} == {"gw-1"}


async def test_replies_in_any_order_come_back_in_request_order() -> None:
    core, bus = classifier(timeout_s=5)
    waiting = asyncio.create_task(
        core.classify([ReviewIn(text=t) for t in "abc"], Source.REST, owner=None)
    )
    for _ in range(100):  # the task publishes within a few loop turns
        if len(bus.requests) == 3:
            break
        await asyncio.sleep(0)
    for r in reversed(bus.requests):
        bus.deliver(prediction_for(r))
    predictions = await waiting
    assert [p.request_id for p in predictions] == [r.request_id for r in bus.requests]


def test_tls_needs_both_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="both"):
        Settings(tls_certfile=tmp_path / "cert.pem")
    both = Settings(tls_certfile=tmp_path / "c.pem", tls_keyfile=tmp_path / "k.pem")
    assert both.tls


def test_each_process_gets_its_own_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RS_GATEWAY_PORT", raising=False)
    assert Settings().instance_id != Settings().instance_id
    assert Settings().port == 8000


def test_windows_since_counts_the_current_window() -> None:
    now = datetime(2025, 3, 4, 10, 17, 42, tzinfo=UTC)
    assert windows_since("minute", 1, now=now) == datetime(2025, 3, 4, 10, 17, tzinfo=UTC)
    assert windows_since("minute", 5, now=now) == datetime(2025, 3, 4, 10, 13, tzinfo=UTC)
    assert windows_since("hour", 2, now=now) == datetime(2025, 3, 4, 9, tzinfo=UTC)


def refusal(request: ReviewRequest, kind: FailureKind) -> RequestFailed:
    return RequestFailed(
        request_id=request.request_id,
        error=kind,
        reason="text has 99 characters, the limit is 10",
        worker_id="w",
        submitted_at=request.submitted_at,
        source=request.source,
        reply_to=request.reply_to,
    )


async def test_an_error_reply_fails_the_wait_at_once_naming_the_review() -> None:
    core, bus = classifier(timeout_s=30)
    ticket = await core.submit([ReviewIn(text="a"), ReviewIn(text="b")], Source.REST, owner=None)
    bus.deliver(refusal(bus.requests[1], FailureKind.INVALID))
    with pytest.raises(WorkerRefused) as refused:
        await asyncio.wait_for(ticket.wait(), 1)  # not the 30 s reply timeout
    assert (refused.value.status, refused.value.code) == (422, "rejected_by_worker")
    assert refused.value.details == [{"field": "reviews.1", "problem": refused.value.message}]
    assert core.replies.in_flight == 0

    single = await core.submit([ReviewIn(text="c")], Source.WS, owner=None)
    bus.deliver(refusal(bus.requests[2], FailureKind.INFERENCE))
    with pytest.raises(WorkerRefused) as failed:
        await single.wait()
    assert (failed.value.status, failed.value.code) == (502, "inference_failed")


async def test_a_retry_with_the_same_key_gets_the_same_answer_and_publishes_once() -> None:
    core, bus = classifier(timeout_s=5)
    key = Idempotency("alice", "order-1")
    first = await core.submit([ReviewIn(text="Lovely.", label=1)], Source.REST, key, owner=None)
    retry = await core.submit([ReviewIn(text="Lovely.", label=1)], Source.REST, key, owner=None)
    assert len(bus.requests) == 1  # the retry waits for the same reply
    assert retry.request_ids == first.request_ids
    bus.deliver(prediction_for(bus.requests[0]))
    [a], [b] = await asyncio.gather(first.wait(), retry.wait())
    assert a == b
    assert core.replies.in_flight == 0  # both waiters let go of the one slot
    [c] = await core.classify([ReviewIn(text="Lovely.", label=1)], Source.REST, key, owner=None)
    assert c == a
    assert len(bus.requests) == 1
    with pytest.raises(ValidationFailed, match="another review"):
        await core.submit([ReviewIn(text="Awful.", label=1)], Source.REST, key, owner=None)
    other = await core.submit([ReviewIn(text="Lovely.", label=1)], Source.REST,
                              Idempotency("bob", "order-1"), owner=None)  # fmt: skip
    assert other.request_ids != first.request_ids  # keys are per caller
    other.release()


async def test_an_unanswered_retry_publishes_again_and_a_stored_answer_is_used() -> None:
    core, bus = classifier(timeout_s=0.1)
    key = Idempotency("alice", "k")
    with pytest.raises(ReplyTimeout):
        await core.classify([ReviewIn(text="x")], Source.REST, key, owner=None)
    ticket = await core.submit([ReviewIn(text="x")], Source.REST, key, owner=None)
    assert len(bus.requests) == 2
    assert bus.requests[0].request_id == bus.requests[1].request_id
    ticket.release()

    stored = prediction_for(request())
    lookups: list[str] = []

    async def from_database(request_id: str, within_s: float) -> Prediction | None:
        lookups.append(request_id)
        return stored

    elsewhere = Classifier(bus, Replies(4, retry_after_s=1), Metrics(), instance_id="gw-2",
                           reply_timeout_s=1, answers=answers(), no_model_retry_after_s=5,
                           stored_answer=from_database)  # fmt: skip
    assert await elsewhere.classify([ReviewIn(text="x")], Source.REST, key, owner=None) == [stored]
    assert len(bus.requests) == 2
    assert len(lookups) == 1


def test_remembered_answers_expire_and_stay_bounded() -> None:
    now = [0.0]
    answers = RememberedAnswers(ttl_s=10, max_entries=2, clock=lambda: now[0])
    p = prediction_for(request())
    answers.remember("a", "fa", p)
    answers.remember("b", "fb", None)
    answers.remember("c", "fc", p)
    assert len(answers) == 2
    assert answers.recall("a", "fa") is None
    assert answers.recall("c", "fc") == p
    now[0] = 11
    assert answers.recall("c", "fc") is None


@pytest.mark.parametrize("key", ["", "x" * 129, "with space", "é"])
def test_bad_idempotency_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationFailed):
        check_key(key)
