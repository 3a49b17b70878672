"""The start-up wait for Kafka on the real broker: it passes when the topics (and the group's
coordinator) are there, names what is missing while they are not, and keeps aiokafka's own
connection errors out of the log while it waits. The models topic read as ModelEvents: the
latest event per model name, tombstones forgotten only when asked."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from contracts import ChangeReason, KafkaSettings, ModelChanged, encode
from contracts.topics import models_key
from deploy.local.launcher import free_port
from runtime.kafka import Forgotten, ModelEvents, keep_latest, serving_only, wait_for_kafka
from runtime.signing import Verifier
from runtime.startup import QuietProbes

log = logging.getLogger("tests.runtime_kafka")


def deadline(seconds: float) -> Callable[[], bool]:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() > end


@pytest.fixture(autouse=True)
def quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(QuietProbes("aiokafka"))
    caplog.set_level(logging.DEBUG)


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]


async def test_ready_topics_and_group_pass(
    kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    topics = [kafka.requests_topic, kafka.predictions_topic, kafka.models_topic]
    assert await wait_for_kafka(kafka, topics=topics, group="rs-test-group", log=log)
    *waited, connected = said(caplog)
    assert connected.startswith(f"INFO connected to Kafka at {kafka.bootstrap_servers}")
    # A fresh broker creates its offsets topic on the first coordinator lookup: that may wait.
    assert all("no coordinator for group rs-test-group yet" in line for line in waited)


async def test_a_missing_topic_is_named(
    kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    missing = f"{kafka.requests_topic}.missing"
    give_up = deadline(1.5)
    assert not await wait_for_kafka(kafka, topics=[missing], log=log, give_up=give_up)
    assert said(caplog) == [
        f"INFO waiting for Kafka at {kafka.bootstrap_servers} (topic {missing} does not exist yet)"
    ]


async def test_no_broker_is_one_line_and_no_aiokafka_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    give_up = deadline(1.5)
    assert not await wait_for_kafka(nowhere, log=log, give_up=give_up)
    assert said(caplog) == [
        f"INFO waiting for Kafka at {nowhere.bootstrap_servers} (no broker answers yet)"
    ]
    # No warning or error of the library's (other tests' clients may still chat at DEBUG).
    assert not [
        r for r in caplog.records if r.name.startswith("aiokafka") and r.levelno >= logging.WARNING
    ]


async def test_model_events_keep_the_latest_and_forget_a_tombstone_only_when_asked(
    kafka: KafkaSettings,
) -> None:
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        for name, version in [("a", "1"), ("b", "1"), ("a", "2")]:
            event = ModelChanged(
                model_name=name,
                version=version,
                alias="production",
                artifact_uri=f"models:/{name}/{version}",
                sha256="0" * 64,
                reason=ChangeReason.PROMOTED,
            )
            await producer.send_and_wait(kafka.models_topic, encode(event), key=name.encode())
        await producer.send_and_wait(kafka.models_topic, None, key=b"b")
    finally:
        await producer.stop()

    async def caught_up(*, forget: bool) -> dict[str, str]:
        events = ModelEvents(kafka, client_id="rs-test-models", verifier=Verifier({}))
        await events.start()
        try:
            return {n: e.version for n, e in (await events.catch_up(forget=forget)).items()}
        finally:
            await events.stop()

    assert await caught_up(forget=False) == {"a": "2", "b": "1"}
    assert await caught_up(forget=True) == {"a": "2"}

    events = ModelEvents(kafka, client_id="rs-test-models", verifier=Verifier({}))
    await events.start()
    try:
        read: list[ModelChanged | Forgotten] = []
        while batch := await events.read(timeout_s=2):
            read += batch
        assert [getattr(e, "version", None) for e in read] == ["1", "1", "2", None]
        assert read[-1] == Forgotten("b")
    finally:
        await events.stop()


def test_a_challenger_is_kept_beside_the_serving_event_never_over_it() -> None:
    def changed(version: str, alias: str) -> ModelChanged:
        return ModelChanged(model_name="m", version=version, alias=alias,
                            artifact_uri=f"models:/m/{version}", sha256="0" * 64)  # fmt: skip

    assert models_key("m", "production") == "m"  # as every record before issue 15
    assert models_key("m", "challenger") == "m@challenger"
    latest: dict[str, ModelChanged] = {}
    keep_latest(latest, [changed("1", "production"), changed("2", "challenger")], forget=True)
    assert {k: e.version for k, e in latest.items()} == {"m": "1", "m@challenger": "2"}
    assert {k: e.version for k, e in serving_only(latest).items()} == {"m": "1"}
    keep_latest(latest, [Forgotten("m@challenger")], forget=True)  # the challenger withdrawn
    assert list(latest) == ["m"]
