"""Waiting for a dependency at start-up: two INFO lines, no library noise from inside a probe,
a reminder when the wait lasts, and a clean way out."""

from __future__ import annotations

import logging

import pytest

from runtime.startup import NotYet, QuietProbes, wait_for

log = logging.getLogger("tests.startup")


class FlakyProbe:
    """Fails ``failures`` times (logging like a client library would), then passes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        logging.getLogger("aiokafka.conn").error("Unable connect to the broker")
        if self.calls <= self.failures:
            raise NotYet("not there yet")


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= level]


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> QuietProbes:
    """The filter on the capturing handler, as ``__main__`` installs it on its own."""
    quiet = QuietProbes("aiokafka")
    caplog.handler.addFilter(quiet)
    return quiet


async def test_a_wait_says_when_it_starts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture, quiet: QuietProbes
) -> None:
    caplog.set_level(logging.DEBUG)
    probe = FlakyProbe(failures=2)
    assert await wait_for("Kafka", "k:9092", probe, log=log, retry_on=NotYet)
    assert probe.calls == 3
    said = lines(caplog)
    assert said[0] == "INFO waiting for Kafka at k:9092 (not there yet)"
    assert said[1].startswith("INFO connected to Kafka at k:9092 (after ")
    assert len(said) == 2  # the second failure is DEBUG; the library's errors are dropped
    # No warning or error of the library's (other tests' clients may still chat at DEBUG).
    assert not [
        r for r in caplog.records if r.name.startswith("aiokafka") and r.levelno >= logging.WARNING
    ]


async def test_no_wait_is_one_line(caplog: pytest.LogCaptureFixture, quiet: QuietProbes) -> None:
    caplog.set_level(logging.INFO)
    assert await wait_for("PostgreSQL", "db:5432", FlakyProbe(0), log=log)
    assert lines(caplog) == ["INFO connected to PostgreSQL at db:5432"]


async def test_library_errors_outside_a_probe_still_show(
    caplog: pytest.LogCaptureFixture, quiet: QuietProbes
) -> None:
    await wait_for("Kafka", "k:9092", FlakyProbe(0), log=log)
    logging.getLogger("aiokafka.conn").error("a real failure after start-up")
    logging.getLogger("aiokafkaesque").error("not aiokafka at all")
    assert "ERROR a real failure after start-up" in lines(caplog)
    assert "ERROR not aiokafka at all" in lines(caplog)


async def test_a_long_wait_is_reminded_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert await wait_for(
        "MLflow", "m:5000", FlakyProbe(3), log=log, retry_on=NotYet, remind_every_s=0
    )
    said = lines(caplog)
    assert said[0] == "INFO waiting for MLflow at m:5000 (not there yet)"
    assert said[1].startswith("WARNING still waiting for MLflow at m:5000 after ")


async def test_give_up_ends_the_wait_and_other_errors_propagate() -> None:
    calls = FlakyProbe(failures=100)
    assert not await wait_for("Kafka", "k", calls, log=log, retry_on=NotYet, give_up=lambda: True)
    assert calls.calls == 1

    async def broken() -> None:
        raise ValueError("a bug, not a dependency that is late")

    with pytest.raises(ValueError, match="a bug"):
        await wait_for("Kafka", "k", broken, log=log, retry_on=NotYet)
