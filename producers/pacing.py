"""Sending at a set rate: a token bucket on the monotonic clock, waited on with asyncio.

Event *i* is due one interval after event *i-1*. A sender that was held up (a slow send, a
pause) may catch up with at most ``burst`` events at once, so the average rate holds without
flooding; a sender that cannot keep up simply runs as fast as it can. Waiting is a timed wait on
the stop event, so Ctrl-C cuts a wait short and nothing ever spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


class Pacer:
    def __init__(
        self,
        rate: float | None,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for as fast as possible)")
        self.rate = rate
        self.interval = 1.0 / rate if rate else 0.0
        # A tenth of a second's worth by default: enough to absorb scheduling jitter.
        self.burst = burst if burst is not None else max(1, int((rate or 0) / 10))
        self._clock = clock
        self._next: float | None = None

    def reserve(self) -> float:
        """Book the next event and return how long to wait for it (0 when it is due now)."""
        if self.rate is None:
            return 0.0
        now = self._clock()
        if self._next is None:
            self._next = now
        # Never let the schedule fall more than `burst` events behind the clock.
        self._next = max(self._next, now - (self.burst - 1) * self.interval)
        wait = self._next - now
        self._next += self.interval
        return max(wait, 0.0)

    async def wait(self, stop: asyncio.Event) -> bool:
        """Wait for the next event's turn; False when ``stop`` was set meanwhile."""
        delay = self.reserve()
        if delay > 0:
            await sleep_unless(stop, delay)
        return not stop.is_set()


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for ``seconds``, or less if ``stop`` is set first."""
    if seconds <= 0 or stop.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
