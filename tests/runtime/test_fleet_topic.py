"""FleetReader on the real fleet topic: the latest report per worker, a tombstone forgets a
worker, and a record that does not decode is logged and skipped, never a crash."""

from __future__ import annotations

import logging

import pytest
from aiokafka import AIOKafkaProducer

from contracts import KafkaSettings, WorkerState, WorkerStatus, encode
from contracts.messages import utc_now
from runtime.fleet import FleetReader, acknowledged


def status(worker: str, version: str, state: WorkerState = WorkerState.SERVING) -> WorkerStatus:
    return WorkerStatus(
        worker_id=worker,
        model_name="m",
        alias="production",
        state=state,
        version=version,
        heartbeat_s=5,
        started_at=utc_now(),
    )


async def test_garbage_and_tombstones_on_the_fleet_topic(
    kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="runtime.fleet")
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        topic = kafka.fleet_topic
        await producer.send_and_wait(topic, encode(status("a", "1")), key=b"a")
        await producer.send_and_wait(topic, b"\x00\xffnot json", key=b"b")
        await producer.send_and_wait(topic, b'{"schema_version": 1}', key=b"c")
        await producer.send_and_wait(topic, encode(status("gone", "1")), key=b"gone")
        await producer.send_and_wait(topic, None, key=b"gone")
        reader = FleetReader(kafka, client_id="test-fleet")
        await reader.start()
        try:
            view = await reader.catch_up(timeout_s=5)
            assert sorted(view.workers) == ["a"]
            assert acknowledged(view, "m", "production", "2") == (False, ["a"])
            # Followed: a newer report replaces the worker's last one.
            await producer.send_and_wait(topic, encode(status("a", "2")), key=b"a")
            for _ in range(20):
                view = await reader.read(timeout_s=0.5)
                if view.workers["a"].version == "2":
                    break
            assert acknowledged(view, "m", "production", "2") == (True, [])
        finally:
            await reader.stop()
    finally:
        await producer.stop()
    skipped = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(skipped) == 2, skipped
    assert all(topic in m for m in skipped)
