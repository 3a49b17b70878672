"""The start-up wait for Kafka on the real broker: it passes when the topics (and the group's
coordinator) are there, names what is missing while they are not, and keeps aiokafka's own
connection errors out of the log while it waits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from contracts import KafkaSettings
from deploy.local.launcher import free_port
from runtime.kafka import wait_for_kafka
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
