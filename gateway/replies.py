"""Pending replies of this gateway instance: one future per request_id, bounded in number.

Pure logic, no I/O: the Kafka consumer hands every prediction addressed to this instance to
:meth:`Replies.resolve`; the transports wait on the futures :meth:`Replies.reserve` returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from contracts import Prediction
from gateway.errors import Overloaded


class Replies:
    def __init__(self, capacity: int, *, retry_after_s: int) -> None:
        self.capacity = capacity
        self._retry_after_s = retry_after_s
        self._pending: dict[str, asyncio.Future[Prediction]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def reserve(self, request_ids: Sequence[str]) -> list[asyncio.Future[Prediction]]:
        """Futures for these ids, all or none: Overloaded when the bound would be passed."""
        if self.in_flight + len(request_ids) > self.capacity:
            raise Overloaded(
                f"{self.in_flight} reviews are already waiting for a reply (limit "
                f"{self.capacity}); retry in {self._retry_after_s} s",
                retry_after=self._retry_after_s,
            )
        loop = asyncio.get_running_loop()
        futures = []
        for request_id in request_ids:
            future: asyncio.Future[Prediction] = loop.create_future()
            self._pending[request_id] = future
            futures.append(future)
        return futures

    def resolve(self, prediction: Prediction) -> bool:
        """True if someone here was waiting for it; a duplicate or late reply is False."""
        future = self._pending.get(prediction.request_id)
        if future is None or future.done():
            return False
        future.set_result(prediction)
        return True

    def release(self, request_ids: Sequence[str]) -> None:
        for request_id in request_ids:
            future = self._pending.pop(request_id, None)
            if future is not None and not future.done():
                future.cancel()
