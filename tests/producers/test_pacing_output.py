"""The producers' pacing (on a fake clock) and predictions file (resume, cut-short lines)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import Prediction, Source, Timings
from contracts.reviewfiles import Row
from producers.output import OutputFormat, PredictionWriter, answered_ids
from producers.pacing import Pacer, sleep_unless
from producers.report import Report


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_spaces_events_evenly_without_drift() -> None:
    clock = FakeClock()
    pacer = Pacer(10, burst=1, clock=clock)
    waits = []
    for _ in range(5):
        wait = pacer.reserve()
        waits.append(round(wait, 6))
        clock.now += wait + 0.01  # each send takes 10 ms
    assert waits == [0.0, 0.09, 0.09, 0.09, 0.09]  # the send time is not added to the interval


def test_pacer_catches_up_at_most_a_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(10, burst=3, clock=clock)
    assert pacer.reserve() == 0.0
    clock.now += 1.0  # held up for ten intervals
    waits = [round(pacer.reserve(), 6) for _ in range(4)]
    assert waits == [0.0, 0.0, 0.0, 0.1]  # three at once, then back to the rate


def test_pacer_without_rate_never_waits() -> None:
    pacer = Pacer(None)
    assert [pacer.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)


async def test_stop_cuts_a_wait_short() -> None:
    stop = asyncio.Event()
    pacer = Pacer(0.001)  # one event every 1000 s
    assert await pacer.wait(stop)  # the first is due at once
    asyncio.get_running_loop().call_soon(stop.set)
    assert not await asyncio.wait_for(pacer.wait(stop), 5)
    await asyncio.wait_for(sleep_unless(stop, 1000), 5)


def prediction(request_id: str, label: int = 1) -> Prediction:
    now = datetime.now(UTC)
    return Prediction(
        request_id=request_id,
        label=1 if label else 0,
        probability=0.9 if label else 0.1,
        model_name="m",
        model_version="3",
        worker_id="w-1",
        submitted_at=now,
        source=Source.PRODUCER,
        timings=Timings(queue_ms=1.0, inference_ms=2.0, batch_size=4),
    )


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv"])
def test_output_round_trip_and_resume(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert answered_ids(path, OutputFormat.AUTO) == set()
    with PredictionWriter(path) as writer:
        writer.write(prediction("run-1"), Row(1, "line 2", "a", label=1, line=2))
        writer.write(prediction("run-2", 0), Row(2, "line 3", "b", label=None, line=3))
    with PredictionWriter(path) as writer:  # a second run appends, with no second header
        writer.write(prediction("run-3"), Row(3, "line 4", "c", label=0, line=4))
    assert answered_ids(path, OutputFormat.AUTO) == {"run-1", "run-2", "run-3"}
    lines = path.read_text().splitlines()
    assert len(lines) == (4 if name.endswith(".csv") else 3)
    if name.endswith(".jsonl"):
        first = json.loads(lines[0])
        assert first["row"] == 1
        assert first["true_label"] == 1
        assert first["model_version"] == "3"


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv"])
def test_a_line_cut_short_is_ignored_and_not_glued_to(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with PredictionWriter(path) as writer:
        writer.write(prediction("run-1"), Row(1, "line 2", "a", line=2))
        writer.write(prediction("run-2"), Row(2, "line 3", "b", line=3))
    text = path.read_text()
    path.write_text(text[: len(text) - 25])  # a crash in the middle of the last line
    assert answered_ids(path, OutputFormat.AUTO) == {"run-1"}
    with PredictionWriter(path) as writer:
        writer.write(prediction("run-2"), Row(2, "line 3", "b", line=3))
    assert answered_ids(path, OutputFormat.AUTO) == {"run-1", "run-2"}


def test_report_summary_and_exit_codes() -> None:
    report = Report(command="replay", rows=10, sent=10, answered=8, labelled=8, correct=6)
    report.timed_out = 2
    assert report.accuracy == 0.75
    assert report.exit_code == 3
    text = report.render(waited=True, feedback=True)
    assert "accuracy       0.7500 (6/8 labelled answers)" in text
    assert "timed out      2" in text
    report.interrupted = True
    assert report.exit_code == 130
    assert Report(command="bulk", sent=3).exit_code == 0
    assert json.loads(report.to_json())["accuracy"] == 0.75
