"""Alerts that call for retraining: the firing DataDrift and LiveAccuracyDrop on ``models.alerts``.

``retrain --on-alerts`` reads the alerts that came since it last looked (a consumer group
remembers where), and commits them only once the retrain they asked for has ended, so a crash
mid-training sees them again. ``retrain --follow`` waits for such an alert and then runs
``retrain --on-alerts`` as a child process: the listener holds no torch in memory between alerts
that come a few times a month, and the child handles (and commits) them as a scheduled run does.

The group's offsets are kept by a second consumer assigned the same partitions: a consumer
reading every partition without a group starts at once, where joining a group waits for a
rebalance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import Alert, AlertStatus, DecodeError, KafkaSettings, decode
from training.settings import RetrainSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


def calls_for_retraining(alert: Alert, settings: RetrainSettings, now: datetime) -> bool:
    return (
        alert.status is AlertStatus.FIRING
        and alert.name in settings.alerts
        and now - alert.received_at <= timedelta(seconds=settings.alert_max_age_s)
    )


async def handle_alerts(
    kafka: KafkaSettings, settings: RetrainSettings, action: Callable[[list[Alert]], T]
) -> T:
    """``action(alerts that call for retraining)`` in a thread, then those alerts committed."""
    async with _consumers(kafka, settings) as (reader, offsets, partitions):
        ends = await _read_from_committed(reader, offsets, partitions)
        alerts = await _read_until(reader, ends)
        now = datetime.now(UTC)
        wanted = [a for a in alerts if calls_for_retraining(a, settings, now)]
        log.info(
            "%d new alerts on %s, %d call for retraining: %s",
            len(alerts), kafka.alerts_topic, len(wanted), sorted({a.name for a in wanted}),
        )  # fmt: skip
        result = await asyncio.to_thread(action, wanted)
        await offsets.commit(dict(ends))
        return result


async def next_retraining_alerts(kafka: KafkaSettings, settings: RetrainSettings) -> list[Alert]:
    """Wait until alerts that call for retraining are past the group's committed offsets.

    Commits nothing: the ``retrain --on-alerts`` they lead to reads and commits them.
    """
    async with _consumers(kafka, settings) as (reader, offsets, partitions):
        await _read_from_committed(reader, offsets, partitions)
        while True:
            batches = await reader.getmany(timeout_ms=1000)
            alerts = [alert for records in batches.values() for alert in _decoded(records)]
            now = datetime.now(UTC)
            wanted = [a for a in alerts if calls_for_retraining(a, settings, now)]
            if wanted:
                return wanted


@asynccontextmanager
async def _consumers(
    kafka: KafkaSettings, settings: RetrainSettings
) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaConsumer, list[TopicPartition]]]:
    """A reader of every partition of the alerts topic, and the group that keeps its offsets."""
    reader = AIOKafkaConsumer(
        kafka.alerts_topic,  # no group: every partition, assigned at start
        **kafka.client(),
        client_id="rs-training-alerts",
        group_id=None,
        enable_auto_commit=False,
    )
    offsets = AIOKafkaConsumer(
        **kafka.client(),
        client_id="rs-training-alerts-offsets",
        group_id=settings.alerts_group_id,
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        await offsets.start()
        try:
            partitions = sorted(reader.assignment())
            offsets.assign(partitions)
            yield reader, offsets, partitions
        finally:
            await offsets.stop()
    finally:
        await reader.stop()


async def _read_from_committed(
    reader: AIOKafkaConsumer, offsets: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Seek each partition to the group's committed offset (or its start); its end offset."""
    starts = await reader.beginning_offsets(partitions)
    ends: dict[TopicPartition, int] = await reader.end_offsets(partitions)
    for tp in partitions:
        committed = await offsets.committed(tp)
        reader.seek(tp, max(starts[tp], committed or 0))
    return ends


async def _read_until(reader: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> list[Alert]:
    alerts: list[Alert] = []
    remaining = {tp for tp, end in ends.items() if await reader.position(tp) < end}
    while remaining:
        batches = await reader.getmany(*remaining, timeout_ms=1000)
        for tp, records in batches.items():
            alerts.extend(_decoded([r for r in records if r.offset < ends[tp]]))
            if records and records[-1].offset + 1 >= ends[tp]:
                remaining.discard(tp)
    return alerts


def _decoded(records: list[Any]) -> list[Alert]:
    alerts: list[Alert] = []
    for record in records:
        try:
            alerts.append(decode(record.value, Alert))
        except DecodeError:
            continue  # the gateway validated what it published; not ours to judge
    return alerts
