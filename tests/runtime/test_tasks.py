"""The Supervisor stops the tasks it started: one (a component that stops) or all of them."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from runtime.tasks import Supervisor


async def forever() -> None:
    await asyncio.Event().wait()


async def test_stopping_one_task_cancels_it_and_leaves_the_others() -> None:
    supervisor = Supervisor("test", CollectorRegistry())
    one = supervisor.start(forever(), name="one")
    other = supervisor.start(forever(), name="other")
    await asyncio.sleep(0)
    await supervisor.stop(one)
    assert one.cancelled()
    assert not other.done()
    await supervisor.stop(one)  # again: nothing to do
    await supervisor.stop()
    assert other.cancelled()
    assert supervisor.failed == []


async def test_stopping_a_task_that_died_does_not_raise_its_error_again() -> None:
    supervisor = Supervisor("test", CollectorRegistry())

    async def broken() -> None:
        raise RuntimeError("died")

    task = supervisor.start(broken(), name="broken")
    await asyncio.gather(task, return_exceptions=True)
    await supervisor.stop(task)
    assert supervisor.failed == ["broken"]
