"""Getting the wanted version in: retried with backoff until it loads or a newer event comes.

The alias may move while MLflow is away (restarting, a network cut): the first download fails,
and a worker that gave up there would serve the old version until it restarts. The
:class:`Reloader` keeps the version the models topic (or, before any model, the registry) last
named, and loads it through the :class:`~workers.models.ModelSlot` with the services' one
backoff (``runtime.backoff``) until it is in service. The old model keeps serving throughout:
the slot swaps only a version that passed every check.

Which refusals are retried (:func:`retried`): a failed download or load may pass next time;
a bundle whose bytes do not match its registered sha256 (``verify``) or whose outputs do not
match its reference outputs (``reference``) fails the same way every time, since a version's
artifact never changes. Those are reported as permanent and not retried; a new event (the alias
moved again, or the same version announced again after the registry was fixed) tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from contracts import ModelChanged
from runtime.backoff import backoff
from workers.models import ModelRefused, ModelSlot

log = logging.getLogger(__name__)

PERMANENT_STAGES = frozenset({"verify", "reference"})


def retried(error: BaseException) -> bool:
    """Whether a failed load is worth another attempt (see the module's docstring)."""
    return isinstance(error, ModelRefused) and error.stage not in PERMANENT_STAGES


@dataclass(frozen=True)
class Failure:
    """One failed attempt at the wanted version, as the fleet topic reports it."""

    event: ModelChanged
    error: ModelRefused
    attempts: int  # failed attempts at this version so far
    retrying: bool

    def describe(self) -> str:
        then = "retrying with backoff" if self.retrying else "permanent: not retried"
        return f"{self.error.stage}: {self.error.reason} ({then})"


class Reloader:
    """Loads the wanted version until it is in service or superseded; :meth:`run` is the task."""

    def __init__(
        self,
        slot: ModelSlot,
        *,
        cap_s: float,
        on_loading: Callable[[ModelChanged, int], None] = lambda event, attempts: None,
        on_failure: Callable[[Failure], None] = lambda failure: None,
    ) -> None:
        self.slot = slot
        self._cap_s = cap_s
        self._on_loading = on_loading
        self._on_failure = on_failure
        self._wanted: ModelChanged | None = None
        self._from_registry = False
        self._gave_up = False
        self._changed = asyncio.Event()

    @property
    def wanted(self) -> ModelChanged | None:
        return self._wanted

    @property
    def trying(self) -> bool:
        """A version from the models topic is wanted and still being tried."""
        return self._wanted is not None and not self._from_registry and not self._gave_up

    def want(self, event: ModelChanged, *, from_registry: bool = False) -> None:
        """Load ``event``'s version from now on (superseding the one wanted before).

        The registry's answer (asked only while nothing is served) never overrides a version
        the models topic named that is still being tried, and the same version and sha256 again
        from the registry is not tried twice.
        """
        if not self.slot.concerns(event):
            return
        if from_registry:
            if self.trying:
                return
            if self._wanted is not None and _same(self._wanted, event):
                return
        self._wanted, self._from_registry, self._gave_up = event, from_registry, False
        self._changed.set()

    def withdraw(self) -> None:
        """The alias is gone (a challenger withdrawn): stop trying, and serve nothing."""
        self._wanted, self._from_registry, self._gave_up = None, False, False
        self._changed.set()  # ends a retry's wait: what it tried is superseded
        self.slot.withdraw()

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            event = self._wanted
            if event is not None and not self.slot.serves(event):
                await self._load(event)

    async def _load(self, event: ModelChanged) -> None:
        attempts = 0

        def superseded(state: RetryCallState) -> bool:
            return self._wanted is not event

        async def sleep(seconds: float) -> None:
            # A newer event ends the wait (and then the retries): it is the one to load now.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=seconds)

        try:
            async for attempt in AsyncRetrying(
                stop=superseded,
                wait=backoff(self._cap_s),
                retry=retry_if_exception(retried),
                sleep=sleep,
                reraise=True,
            ):
                with attempt:
                    self._on_loading(event, attempts)
                    try:
                        await self.slot.load(event)
                    except ModelRefused as exc:
                        attempts += 1
                        failure = Failure(event, exc, attempts, retrying=retried(exc))
                        self._report(failure)
                        raise
        except ModelRefused:
            if self._wanted is event:
                self._gave_up = True  # permanent: wait for a newer event

    def _report(self, failure: Failure) -> None:
        log.warning(
            "loading %s version %s failed (attempt %d): %s",
            failure.event.model_name,
            failure.event.version,
            failure.attempts,
            failure.describe(),
        )
        self._on_failure(failure)


def _same(a: ModelChanged, b: ModelChanged) -> bool:
    return a.version == b.version and a.sha256 == b.sha256
