"""Reloader: the wanted version is retried with backoff until it loads or a newer one comes;
permanent refusals are reported as such and not retried; the old model serves throughout."""

from __future__ import annotations

import asyncio

import pytest

from contracts import ModelChanged
from tests.serving import eventually
from tests.workers.test_models import FakeSource, event, slot
from workers.models import LoadedModel, ModelRefused
from workers.reload import Failure, Reloader, retried


@pytest.mark.parametrize(
    ("error", "again"),
    [
        (ModelRefused("download", "ConnectionError: connection refused"), True),
        (ModelRefused("load", "RuntimeError: out of memory"), True),
        (ModelRefused("verify", "bundle sha256 is x, expected y"), False),
        (ModelRefused("reference", "max abs difference 0.3"), False),
        (RuntimeError("not a refusal"), False),
    ],
)
def test_which_refusals_are_retried(error: BaseException, again: bool) -> None:
    assert retried(error) is again


class Flaky(FakeSource):
    """Version ``version`` fails to download ``times`` times, then loads."""

    def __init__(self, version: str, times: int) -> None:
        super().__init__()
        self.version = version
        self.times = times

    def load(self, ev: ModelChanged) -> LoadedModel:
        if ev.version == self.version and self.times > 0:
            self.times -= 1
            self.loads.append(ev.version)
            raise ModelRefused("download", "ConnectionError: MLflow is away")
        return super().load(ev)


async def running(reloader: Reloader) -> asyncio.Task[None]:
    return asyncio.create_task(reloader.run())


async def test_a_failing_download_is_retried_until_it_loads_old_one_serving_meanwhile() -> None:
    source = Flaky("2", times=3)
    s, swaps, _ = slot(source)
    failures: list[Failure] = []
    reloader = Reloader(s, cap_s=0.05, on_failure=failures.append)
    task = await running(reloader)
    try:
        reloader.want(event("1"))
        await eventually(lambda: s.current is not None, timeout_s=5, what="version 1")
        reloader.want(event("2"))
        await eventually(
            lambda: s.current is not None and s.current.version == "2",
            timeout_s=10,
            what="version 2 after its retries",
        )
    finally:
        task.cancel()
    assert swaps == [(None, "1"), ("1", "2")]  # never anything in between
    assert [f.attempts for f in failures] == [1, 2, 3]
    assert all(f.retrying and f.event.version == "2" for f in failures)
    assert "retrying with backoff" in failures[0].describe()


async def test_a_permanent_refusal_is_reported_once_and_not_retried() -> None:
    source = FakeSource(broken={"2": ModelRefused("verify", "sha256 mismatch")})
    s, _, _ = slot(source)
    failures: list[Failure] = []
    reloader = Reloader(s, cap_s=0.05, on_failure=failures.append)
    task = await running(reloader)
    try:
        reloader.want(event("1"))
        await eventually(lambda: s.current is not None, timeout_s=5, what="version 1")
        reloader.want(event("2"))
        await eventually(lambda: bool(failures), timeout_s=5, what="the refusal")
        await asyncio.sleep(0.3)  # room for retries that must not come
        assert source.loads == ["1", "2"]
        assert not reloader.trying
        # A newer event is tried at once.
        reloader.want(event("3"))
        await eventually(
            lambda: s.current is not None and s.current.version == "3",
            timeout_s=5,
            what="version 3",
        )
    finally:
        task.cancel()
    assert len(failures) == 1
    assert not failures[0].retrying
    assert "permanent" in failures[0].describe()


async def test_a_newer_event_supersedes_a_version_that_keeps_failing() -> None:
    source = Flaky("2", times=1_000)
    s, swaps, _ = slot(source)
    reloader = Reloader(s, cap_s=0.05)
    task = await running(reloader)
    try:
        reloader.want(event("2"))
        await eventually(lambda: len(source.loads) >= 2, timeout_s=5, what="retries of 2")
        reloader.want(event("3"))
        await eventually(lambda: s.current is not None, timeout_s=5, what="version 3")
        tried = len(source.loads)
        await asyncio.sleep(0.3)  # room for retries of 2 that must not come
        assert len(source.loads) == tried
    finally:
        task.cancel()
    assert swaps == [(None, "3")]


async def test_the_registry_answer_never_overrides_a_version_the_topic_named() -> None:
    source = Flaky("2", times=1_000)
    s, _, _ = slot(source)
    reloader = Reloader(s, cap_s=0.05)
    reloader.want(event("2"))
    reloader.want(event("1"), from_registry=True)
    wanted = reloader.wanted
    assert wanted is not None
    assert wanted.version == "2"
    assert reloader.trying
