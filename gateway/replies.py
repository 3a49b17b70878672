"""Pending replies of this gateway instance: one future per request_id, bounded in number.

Pure logic, no I/O: the Kafka consumer hands every reply addressed to this instance to
:meth:`Replies.resolve`; the transports wait on the futures :meth:`Replies.reserve` returns.
A retry named by the same Idempotency-Key reserves the same request_id again while the first
still waits: both share one future, which is cancelled only when its last waiter lets go.

Each API key (its ``owner``) holds at most ``per_owner`` of the slots, so that one busy client
cannot take every slot from the others; open mode has no owner and only the total bound.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from contracts import FailureKind, Prediction, RequestFailed
from gateway.errors import Overloaded, WorkerRefused


@dataclass
class _Pending:
    future: asyncio.Future[Prediction]
    owner: str | None
    waiters: int = 1


class Replies:
    def __init__(self, capacity: int, *, per_owner: int | None = None, retry_after_s: int) -> None:
        self.capacity = capacity
        self.per_owner = capacity if per_owner is None else min(per_owner, capacity)
        self._retry_after_s = retry_after_s
        self._pending: dict[str, _Pending] = {}
        self._owned: Counter[str] = Counter()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def is_pending(self, request_id: str) -> bool:
        return request_id in self._pending

    def reserve(
        self, request_ids: Sequence[str], owner: str | None = None
    ) -> list[asyncio.Future[Prediction]]:
        """Futures for these ids, all or none: Overloaded when the bound (of all, or of this
        owner's) would be passed. An id already pending shares its future (and takes no more
        room)."""
        new = {i for i in request_ids if i not in self._pending}
        if self.in_flight + len(new) > self.capacity:
            raise Overloaded(
                f"{self.in_flight} reviews are already waiting for a reply (limit "
                f"{self.capacity}); retry in {self._retry_after_s} s",
                retry_after=self._retry_after_s,
            )
        if owner is not None and self._owned[owner] + len(new) > self.per_owner:
            raise Overloaded(
                f"this API key has {self._owned[owner]} reviews waiting for a reply (limit "
                f"{self.per_owner} per key); retry in {self._retry_after_s} s",
                retry_after=self._retry_after_s,
            )
        loop = asyncio.get_running_loop()
        futures = []
        for request_id in request_ids:
            pending = self._pending.get(request_id)
            if pending is None:
                pending = self._pending[request_id] = _Pending(loop.create_future(), owner)
                if owner is not None:
                    self._owned[owner] += 1
            else:
                pending.waiters += 1
            futures.append(pending.future)
        return futures

    def resolve(self, reply: Prediction | RequestFailed) -> bool:
        """True if someone here was waiting for it; a duplicate or late reply is False. An
        error reply fails the waiters at once with :class:`WorkerRefused`."""
        pending = self._pending.get(reply.request_id)
        if pending is None or pending.future.done():
            return False
        if isinstance(reply, Prediction):
            pending.future.set_result(reply)
        else:
            pending.future.set_exception(
                WorkerRefused(
                    f"a worker could not classify the review: {reply.reason}",
                    request_id=reply.request_id,
                    invalid=reply.error is FailureKind.INVALID,
                )
            )
            pending.future.exception()  # retrieved: a waiter that already left is no error
        return True

    def release(self, request_ids: Sequence[str]) -> None:
        """Each id once per reservation: the last waiter to let go frees the slot."""
        for request_id in request_ids:
            pending = self._pending.get(request_id)
            if pending is None:
                continue
            pending.waiters -= 1
            if pending.waiters <= 0:
                del self._pending[request_id]
                if pending.owner is not None:
                    self._owned[pending.owner] -= 1
                    if not self._owned[pending.owner]:
                        del self._owned[pending.owner]
                if not pending.future.done():
                    pending.future.cancel()
