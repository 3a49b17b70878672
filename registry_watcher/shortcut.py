"""Shipping a move on the signed webhook's word when it names the next version checked ahead.

A move to the next version (``registry_watcher.candidates``: its gates read, its bundle
downloaded and checked, every worker holding it on disk) needs nothing more from the registry
than the alias itself, and MLflow's webhook says where the alias went (HMAC-signed, fresh, not a
replay: ``registry_watcher.webhook``). So the watcher ships such a move at once, without the
registry lookup first, and asks the registry right after. The registry stays the source of
truth: while a move shipped this way is *unconfirmed* its release tags wait, and when the
registry says otherwise (a later move, a delivery that arrived out of order, the alias deleted,
the version's tags changed since they were read) the watcher announces what the registry says;
where that is no version that may ship, it first announces again what served before.

Deliveries can arrive out of order (MLflow posts them from a thread pool, and retries): a
delivery built before the newest one seen for the same model takes no shortcut, and neither
does one that names no version newer than the one shipped (a move back is a lookup, as a
rollback always was).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contracts import ModelChanged
from registry_watcher.registry import Target
from registry_watcher.webhook import AliasEvent


@dataclass(frozen=True)
class Hint:
    """The newest signed move of a model's serving alias, not acted upon yet."""

    version: str | None
    sent_at: datetime
    heard_at: float  # perf_counter when it was received


@dataclass
class Moves:
    """The signed alias moves heard, newest per model; an older delivery is no hint."""

    _newest: dict[str, datetime] = field(default_factory=dict)
    _hints: dict[str, Hint] = field(default_factory=dict)

    def heard(self, event: AliasEvent, heard_at: float) -> bool:
        """Keep ``event`` as its model's hint; False (kept nothing) when it carries no time, or
        a delivery built later was heard already."""
        name = event.model_name
        if event.sent_at is None:
            return False
        newest = self._newest.get(name)
        if newest is not None and event.sent_at <= newest:
            return False
        self._newest[name] = event.sent_at
        self._hints[name] = Hint(event.version, event.sent_at, heard_at)
        return True

    def take(self) -> dict[str, Hint]:
        hints, self._hints = self._hints, {}
        return hints


def ahead(
    hint: Hint, next_version: ModelChanged | None, published: ModelChanged | None
) -> ModelChanged | None:
    """The event to ship before the lookup, or None (the lookup decides): only a move to the
    next version checked ahead, newer than the one shipped."""
    if hint.version is None or next_version is None or hint.version != next_version.version:
        return None
    if published is not None and not _newer(next_version.version, published.version):
        return None
    return next_version.model_copy(update={"changed_at": datetime.now(UTC)})


def _newer(version: str, than: str) -> bool:
    return version.isdigit() and than.isdigit() and int(version) > int(than)


@dataclass
class Unconfirmed:
    """A move shipped on the webhook's word, until the registry's answer comes."""

    event: ModelChanged
    before: ModelChanged | None  # what was shipped before it
    shipped_at: str
    # The registry's target when it agrees (the release tags are written then), None if not.
    confirmed: asyncio.Future[Target | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def agrees(self, target: Target | None) -> bool:
        """Whether the registry names the very version and bundle shipped."""
        if target is None:
            return False
        a, b = self.event, target.event
        return (a.version, a.sha256, a.artifact_uri) == (b.version, b.sha256, b.artifact_uri)
