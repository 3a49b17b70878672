"""Client retries named by an Idempotency-Key: the same answer, counted once.

A key names a request per caller: the request_id is derived from (the caller's key name, the
Idempotency-Key, the review's place in a batch), so a retry publishes the same request_id and
the statistics, idempotent on request_id, count it once. The answer itself is remembered here
for ``ttl_s`` (bounded in number, oldest first out); a retry that reaches another replica, or
this one after a restart, finds it in the statistics database instead (``StatsStore.answer``).
A key reused with another review is refused (422), as long as the first is remembered here.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from contracts import Prediction
from gateway.errors import ValidationFailed

MAX_KEY_CHARS = 128


def request_id_for(caller: str, key: str, index: int) -> str:
    digest = hashlib.sha256(f"{caller}\0{key}\0{index}".encode()).hexdigest()
    return f"idem-{digest[:40]}"


def fingerprint(text: str, label: int | None) -> str:
    return hashlib.sha256(f"{label}\0{text}".encode()).hexdigest()


def check_key(key: str) -> str:
    """The key as given, or a 422: 1 to 128 visible ASCII characters."""
    if not 1 <= len(key) <= MAX_KEY_CHARS or not all(" " < c <= "~" for c in key):
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters",
            code="invalid_idempotency_key",
            details=[{"field": "Idempotency-Key", "problem": "1 to 128 visible ASCII characters"}],
        )
    return key


@dataclass
class _Entry:
    fingerprint: str
    answer: Prediction | None
    expires_at: float


class RememberedAnswers:
    def __init__(
        self, *, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def recall(self, request_id: str, print_: str) -> Prediction | None:
        """The remembered answer, None if there is none (yet), or a 422 for another review."""
        self._expire()
        entry = self._entries.get(request_id)
        if entry is None:
            return None
        if entry.fingerprint != print_:
            raise ValidationFailed(
                "this Idempotency-Key was already used for another review; use a new key",
                code="idempotency_conflict",
                details=[{"field": "Idempotency-Key", "problem": "reused with another review"}],
            )
        return entry.answer

    def remember(self, request_id: str, print_: str, answer: Prediction | None) -> None:
        """The review behind a key (``answer`` None: still waiting), then its answer."""
        if answer is None and request_id in self._entries:
            return
        self._entries.pop(request_id, None)
        self._entries[request_id] = _Entry(print_, answer, self._clock() + self.ttl_s)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, request_id: str) -> None:
        """A request that got no answer: its retry publishes again."""
        entry = self._entries.get(request_id)
        if entry is not None and entry.answer is None:
            del self._entries[request_id]

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.expires_at > now:
                return
            self._entries.popitem(last=False)
