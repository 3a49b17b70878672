"""The worker's settlement chain: offsets become committable only in batch order, and only
after every reply of the batch and of every batch before it was acknowledged."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from runtime.records import Record
from workers.settlement import Settlements


def records(partition: int, *offsets: int) -> list[Record]:
    return [Record("requests", partition, o, None, b"{}") for o in offsets]


async def test_a_batch_settles_after_its_acks_and_the_batch_before_it() -> None:
    chain = Settlements()
    loop = asyncio.get_running_loop()
    first_ack, second_ack = loop.create_future(), loop.create_future()
    chain.add([first_ack], records(0, 4, 5))
    chain.add([second_ack], records(0, 6, 7))

    second_ack.set_result(None)  # the later batch is acknowledged first
    await asyncio.sleep(0.01)
    assert chain.take() == {}  # ... but waits for the one before it

    first_ack.set_result(None)
    await chain.settle(keep=0)
    assert len(chain) == 0
    assert chain.take() == {TopicPartition("requests", 0): 8}
    assert chain.take() == {}  # taken once


async def test_a_failed_ack_settles_neither_its_batch_nor_any_later_one() -> None:
    chain = Settlements()
    loop = asyncio.get_running_loop()
    failed, later_ack = loop.create_future(), loop.create_future()
    chain.add([failed], records(1, 10))
    chain.add([later_ack], records(1, 11))
    later_ack.set_result(None)
    failed.set_exception(ConnectionError("broker away"))

    await chain.wait()  # a rebalance waits for both and raises nothing
    with pytest.raises(ConnectionError):
        await chain.drain()  # the loop does
    assert chain.take() == {}


async def test_settle_keeps_at_most_the_batches_in_flight() -> None:
    chain = Settlements()
    loop = asyncio.get_running_loop()
    acks = [loop.create_future() for _ in range(3)]
    for i, ack in enumerate(acks):
        chain.add([ack], records(2, i))
    acks[0].set_result(None)
    await chain.settle(keep=2)
    assert len(chain) == 2
    assert chain.take() == {TopicPartition("requests", 2): 1}
    for ack in acks[1:]:
        ack.set_result(None)
    await chain.drain()
    assert chain.take() == {TopicPartition("requests", 2): 3}
