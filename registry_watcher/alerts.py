"""The alerts topic as the watcher reads it: every alert from the start of the probation window
on, so a watcher restarted during a probation still sees what fired before it came back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import UnknownTopicOrPartitionError

from contracts import Alert, DecodeError, KafkaSettings, decode

log = logging.getLogger(__name__)


async def alerts_since(
    kafka: KafkaSettings, *, lookback_s: float, client_id: str
) -> AsyncIterator[Alert]:
    """Alerts received in the last ``lookback_s``, then each new one, until cancelled.
    A record that is not an Alert is skipped with a warning."""
    consumer = AIOKafkaConsumer(
        kafka.alerts_topic,
        **kafka.client(),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    try:  # start() inside: a cancel while it connects must still close the client
        await consumer.start()
        partitions = sorted(consumer.assignment())
        if not partitions:
            raise UnknownTopicOrPartitionError(kafka.alerts_topic)
        since = datetime.now(UTC) - timedelta(seconds=lookback_s)
        found = await consumer.offsets_for_times(
            {tp: int(since.timestamp() * 1000) for tp in partitions}
        )
        for tp, at in found.items():
            if at is None:  # nothing that recent: only what comes from now on
                await consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, at.offset)
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    try:
                        yield decode(record.value, Alert)
                    except DecodeError as exc:
                        log.warning(
                            "skipping undecodable alert %s[%d]@%d: %s",
                            record.topic, record.partition, record.offset, exc,
                        )  # fmt: skip
    finally:
        await consumer.stop()
