"""faust's aiokafka transport with a fetcher that hands over a whole fetch at a time.

Why: faust-streaming 0.15.3's ``Consumer._drain_messages`` (faust/transport/consumer.py)
delivers every record through ``Service.wait_first(callback(message), suspend_flow.wait())``:
four tasks and an ``asyncio.wait`` per record, which cost the processor more CPU than decoding
and storing the record (issue #20: ~150 us per record in all, the store alone ~45 us). This
consumer replaces only that method: it takes one ``getmany`` result, turns it into messages
per partition, and delivers the lot inside **one** ``wait_first`` against the same
``suspend_flow``, so a rebalance still interrupts a delivery that waits on a full channel.

It also seeks a partition that has no committed offset back to its start whenever faust
seeks to the committed offsets (:func:`seek_to_committed_or_earliest`).

Everything else is faust's own: the conductor's ``on_message`` callback per record (tracking,
flow control, decoding, the channel's queue and its back-pressure), the read offsets and the
gaps they record for acknowledged topics, ``commit_every``, the active-partition, generation
and flow checks that ``Consumer.getmany`` makes per record (here per partition and between
records), and the seek back to the committed offsets when the flow was stopped. Written
against faust-streaming 0.15.3 (the version in uv.lock); check this method against
``Consumer._drain_messages`` and ``Consumer.getmany`` when faust is upgraded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

# How many records are delivered between two yields to the event loop (faust yields every
# 100 too), so that /healthz and the agents get their turn during a large fetch.
YIELD_EVERY = 100

# How long one getmany waits for records (faust's own loop passes 1.0 too).
FETCH_WAIT_S = 1.0

Fetch = list[tuple[TP, list[Message]]]


async def seek_to_committed_or_earliest(
    consumer: AIOKafkaConsumer,
) -> dict[TopicPartition, int | None]:
    """Seek every assigned partition to its committed offset, or to its start if it has none.

    Why: aiokafka's ``seek_to_committed`` skips a partition without a committed offset (or
    with 0), leaving it where the consumer had read to. faust seeks so after every rebalance and
    whenever a fetch arrives while the flow is stopped, then drops what it had fetched and
    queued but not processed. On a partition never committed yet (fresh topics, the first
    minutes), those records were then never read again: the partition's lag stayed, nothing
    stored, nothing committed (issue #20, one two-processor run in sixteen). The start is what
    ``auto_offset_reset="earliest"`` (stats.kafka) gives a partition without a commit anyway;
    records read twice are duplicates the store counts once.
    """
    committed: dict[TopicPartition, int | None] = await consumer.seek_to_committed()
    assigned = consumer.assignment()  # a rebalance may have begun while the offsets were read
    for tp, offset in committed.items():
        if not offset and tp in assigned:
            # Not seek_to_beginning: it waits, up to the request timeout, for the fetcher to
            # look the start up, which a stopping consumer no longer does. Offset 0 needs no
            # look-up; where retention has deleted it, auto_offset_reset moves to the first kept.
            consumer.seek(tp, 0)
    return committed


class SeekingThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's thread around the aiokafka consumer, seeking as described above."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await self.call_thread(
            seek_to_committed_or_earliest, self._ensure_consumer()
        )
        return committed


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, its fetch loop delivering one fetch per ``wait_first``."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return SeekingThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetch = await self._fetch()
                # faust sleeps here too: getmany can return at once, again and again.
                await self.sleep(0)
                if fetch and not self.should_stop:
                    await self.wait_first(self._deliver(fetch), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _fetch(self) -> Fetch:
        """``Consumer.getmany`` without its per-record generator: the messages of one fetch
        per partition, in offset order, for the partitions still active."""
        records, active = await self._wait_next_records(FETCH_WAIT_S)
        if records is None or self.should_stop:
            return []
        if not self.flow_active:
            # As getmany: a stopped flow means a rebalance; go back to what was committed.
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning("exception performing seek when flow not active %r", exc)
            return []
        fetch: Fetch = []
        to_message = self._to_message
        for tp, tp_records in records.items():
            if active is None or tp in active or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                fetch.append((tp, [to_message(tp, record) for record in tp_records]))
        return fetch

    async def _deliver(self, fetch: Fetch) -> None:
        """Each message to the conductor, as ``_drain_messages`` does, minus its tasks."""
        callback = self.callback
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        generation_id = self.app.consumer_generation_id
        since_yield = 0
        for tp, messages in fetch:
            for message in messages:
                # getmany's checks: a rebalance began, or ended with a new generation.
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    return
                since_yield += 1
                if since_yield > YIELD_EVERY:
                    await asyncio.sleep(0)
                    since_yield = 0
                offset = message.offset
                r_offset = get_read_offset(tp)
                if r_offset is None or offset >= r_offset:
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await callback(message)
                    set_read_offset(tp, offset)


class BatchTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with :class:`BatchConsumer` as its consumer."""

    Consumer: ClassVar[type[Any]] = BatchConsumer
