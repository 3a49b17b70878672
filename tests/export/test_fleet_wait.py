"""``promote --wait-s``: the wait for the fleet's acknowledgement, on the real fleet topic."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from contracts import KafkaSettings, WorkerState, WorkerStatus, encode
from contracts.messages import utc_now
from export.fleet import wait_for_fleet


async def report(kafka: KafkaSettings, worker: str, version: str) -> None:
    status = WorkerStatus(
        worker_id=worker,
        model_name="m",
        alias="production",
        state=WorkerState.SERVING,
        version=version,
        heartbeat_s=30,  # live for the whole test without sending heartbeats
        started_at=utc_now(),
    )
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(kafka.fleet_topic, encode(status), key=worker.encode())
    finally:
        await producer.stop()


async def test_the_wait_ends_when_every_live_worker_serves_the_version(
    kafka: KafkaSettings,
) -> None:
    await report(kafka, "w1", "2")
    await report(kafka, "w2", "2")
    answer = await wait_for_fleet(kafka, "m", "production", "2", timeout_s=30)
    assert answer.done, answer
    assert "every live worker serves v2" in answer.describe("2")


async def test_a_timeout_names_the_workers_still_on_another_version(
    kafka: KafkaSettings,
) -> None:
    await report(kafka, "w1", "2")
    await report(kafka, "w2", "1")
    answer = await wait_for_fleet(kafka, "m", "production", "2", timeout_s=3)
    assert not answer.done
    assert answer.pending == ["w2"]
    assert "w2 not on v2" in answer.describe("2")


async def test_an_empty_fleet_is_not_an_acknowledgement(kafka: KafkaSettings) -> None:
    answer = await wait_for_fleet(kafka, "m", "production", "2", timeout_s=2)
    assert not answer.done
    assert "no live worker reported" in answer.describe("2")
