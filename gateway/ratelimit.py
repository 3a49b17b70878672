"""Per-key request rates: every API key has its own moving windows (``RS_GATEWAY_RATE_LIMIT``,
e.g. ``100/second;3000/minute``), over REST and WebSocket messages alike. A request over them
is a 429 ``rate_limited`` whose Retry-After is when the window has room again, so one key cannot
take the gateway from the others. Open mode has no keys, so nothing to limit by.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from gateway.auth import Principal
from gateway.errors import RateLimited


def parse_rates(text: str) -> list[RateLimitItem]:
    """``"100/second;3000/minute"`` as rate items; empty: no limit. ValueError if malformed."""
    return parse_many(text) if text.strip() else []


class KeyRates:
    def __init__(self, rates: str) -> None:
        self._items = parse_rates(rates)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def take(self, principal: Principal) -> None:
        """Count one request of the principal's key, or raise RateLimited."""
        key = principal.key_sha256
        if key is None or not self._items:
            return
        for item in self._items:  # test every window first: a refused request counts nowhere
            if not self._limiter.test(item, key):
                reset = self._limiter.get_window_stats(item, key).reset_time
                raise RateLimited(
                    f"key {principal.name!r} is over its rate of {item}; slow down",
                    retry_after=max(1, math.ceil(reset - time.time())),
                )
        for item in self._items:
            self._limiter.hit(item, key)
