"""The worker's settlement chain: offsets become committable only in batch order, and only
after every reply of the batch and of every batch before it was acknowledged."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from workers.batch import Record
from workers.service import Worker
from workers.settings import Settings


def records(partition: int, *offsets: int) -> list[Record]:
    return [Record("requests", partition, o, None, b"{}") for o in offsets]


async def test_a_batch_settles_after_its_acks_and_the_batch_before_it() -> None:
    worker = Worker(Settings())
    loop = asyncio.get_running_loop()
    first_ack, second_ack = loop.create_future(), loop.create_future()
    first = asyncio.create_task(worker._acknowledge(None, [first_ack], records(0, 4, 5)))
    second = asyncio.create_task(worker._acknowledge(first, [second_ack], records(0, 6, 7)))

    second_ack.set_result(None)  # the later batch is acknowledged first
    await asyncio.sleep(0.01)
    assert worker._settled == {}  # ... but waits for the one before it

    first_ack.set_result(None)
    await asyncio.gather(first, second)
    assert worker._settled == {TopicPartition("requests", 0): 8}


async def test_a_failed_ack_settles_neither_its_batch_nor_any_later_one() -> None:
    worker = Worker(Settings())
    loop = asyncio.get_running_loop()
    failed, later_ack = loop.create_future(), loop.create_future()
    first = asyncio.create_task(worker._acknowledge(None, [failed], records(1, 10)))
    second = asyncio.create_task(worker._acknowledge(first, [later_ack], records(1, 11)))
    later_ack.set_result(None)
    failed.set_exception(ConnectionError("broker away"))

    with pytest.raises(ConnectionError):
        await second
    with pytest.raises(ConnectionError):
        await first
    assert worker._settled == {}
