"""The port to the message bus: publish requests and feedback; replies come back by callback."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from contracts import Alert, Feedback, ReviewRequest


class RequestBus(AbstractAsyncContextManager["RequestBus", None], Protocol):
    """Started and stopped with ``async with``."""

    @property
    def connected(self) -> bool:
        """The clients are started; publishing may still fail if the broker went away."""
        ...

    async def publish_requests(self, requests: Sequence[ReviewRequest]) -> None:
        """Durably published (acks=all) or KafkaUnavailable."""
        ...

    async def publish_feedback(self, feedback: Feedback) -> None: ...

    async def publish_alerts(self, alerts: Sequence[Alert]) -> None:
        """On the alerts topic, keyed by fingerprint; durably or KafkaUnavailable."""
        ...

    async def check(self) -> bool:
        """The broker answers a metadata request now (readiness)."""
        ...
