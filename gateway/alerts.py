"""The alerts topic, followed: the recent alerts for ``GET /v1/alerts`` and the chat's panel.

Alertmanager posts to ``POST /v1/admin/alerts``; the gateway publishes each alert on the alerts
topic (the record, retained) and every replica reads that topic back, like the models topic:
every partition from the beginning, no consumer group. So every replica shows the same alerts
whichever one Alertmanager reached, and a restarted gateway shows them again at once.

Alertmanager repeats a group's alerts in each notification (and resends firing ones): the
board keeps one entry per alert (fingerprint and start), with its latest status, and tells the
WebSockets only about a new alert or a changed status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import UnknownTopicOrPartitionError

from contracts import Alert, DecodeError, KafkaSettings, decode
from gateway.topic_readers import Follow, TopicReaders
from runtime.tasks import Supervisor

log = logging.getLogger(__name__)

AlertKey = tuple[str, datetime]


class AlertBoard:
    """The last ``keep`` alerts (latest status each), and their changes for any reader."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._alerts: OrderedDict[AlertKey, Alert] = OrderedDict()
        self._readers: set[asyncio.Queue[Alert]] = set()

    def recent(self) -> list[Alert]:
        """Newest change first."""
        return list(reversed(self._alerts.values()))

    def clear(self) -> None:
        self._alerts.clear()

    def add(self, alert: Alert, *, tell: bool = True) -> bool:
        """Record ``alert``; True (and readers told, if ``tell``) when it is new or changed."""
        key = (alert.fingerprint, alert.starts_at)
        known = self._alerts.pop(key, None)
        self._alerts[key] = alert
        while len(self._alerts) > self._keep:
            self._alerts.popitem(last=False)
        changed = known is None or known.status != alert.status
        if changed and tell:
            for queue in self._readers:
                with contextlib.suppress(asyncio.QueueFull):  # a stuck reader misses some
                    queue.put_nowait(alert)
        return changed

    @contextlib.contextmanager
    def follow(self) -> Iterator[asyncio.Queue[Alert]]:
        """A queue of each new or changed alert from now on, while the block runs."""
        queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=self._keep)
        self._readers.add(queue)
        try:
            yield queue
        finally:
            self._readers.discard(queue)


class AlertFeed(AbstractAsyncContextManager["AlertFeed", None], Protocol):
    """Started and stopped with ``async with``."""

    @property
    def board(self) -> AlertBoard: ...


class AlertsTopic(TopicReaders):
    def __init__(
        self, settings: KafkaSettings, *, client_id: str, supervisor: Supervisor, keep: int
    ) -> None:
        super().__init__(settings, client_id=client_id, supervisor=supervisor)
        self.board = AlertBoard(keep)

    def readers(self) -> Mapping[str, tuple[str, Follow]]:
        return {"alerts-topic": (self._settings.alerts_topic, self._follow)}

    async def _follow(self) -> None:
        s = self._settings
        consumer = AIOKafkaConsumer(
            s.alerts_topic,
            **s.client(),
            client_id=f"{self._client_id}-alerts",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:  # start() inside: a cancel while it connects must still close the client
            await consumer.start()
            partitions = sorted(consumer.assignment())
            if not partitions:
                raise UnknownTopicOrPartitionError(s.alerts_topic)
            await consumer.seek_to_beginning(*partitions)
            # What was there before this read is history: shown, not pushed as news.
            end = await consumer.end_offsets(partitions)
            self.board.clear()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    for record in records:
                        self._take(record, tell=record.offset >= end[tp])
        finally:
            await consumer.stop()

    def _take(self, record: Any, *, tell: bool) -> None:
        try:
            alert = decode(record.value, Alert)
        except DecodeError as exc:
            log.warning(
                "skipping undecodable record %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc.reason,
            )
            return
        if self.board.add(alert, tell=tell) and tell:
            log.info("alert %s %s: %s", alert.name, alert.status.value, alert.summary)
