"""Which model a worker serves, and how a new version gets in (or is refused).

A :class:`ModelSlot` holds the model in service. :meth:`ModelSlot.offer` loads a version through
a :class:`ModelSource` (download, sha256 verification, ONNX Runtime session, reference check),
and only when every step passed does it replace the current model, in one assignment. The
consumer loop reads :attr:`ModelSlot.current` once per batch, so a swap always falls between
batches and every prediction names the version that produced it.

A source that stages a load (:class:`Staging`: everything but the reference check) has the
check run between batches, under ``between_batches`` (the worker's batch lock): the served
version's weights pages are dropped from memory first (they fault back from their file if it
keeps serving), so a hot reload never holds two versions' weights at once. The worker answers
nothing for those few ms (5-11 ms with the trained fast model); requests wait in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from contracts import Explanation, ModelChanged, RequestFeatures
from runtime.heap import trim

log = logging.getLogger(__name__)

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class Predictor(Protocol):
    def predict_described(
        self, texts: list[str]
    ) -> tuple[NDArray[np.float32], list[RequestFeatures]]: ...


class Explainer(Protocol):
    def explain(self, text: str) -> Explanation: ...


class ModelRefused(Exception):
    """A version that must not be served; ``stage`` says which step failed."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    sha256: str
    predictor: Predictor
    path: Path | None = None
    explainer: Explainer | None = None
    # Seconds each step of the load took (download, session, reference): hot reload's budget.
    timings: Mapping[str, float] = field(default_factory=dict)


class ModelSource(Protocol):
    """Where models come from: the registry, or an in-memory fake in unit tests."""

    def serving(self, name: str, alias: str) -> ModelChanged | None:
        """Where the alias points now (blocking; may raise when the registry is away)."""
        ...

    def load(self, event: ModelChanged) -> LoadedModel:
        """Download, verify, load and check a version; raise ModelRefused (blocking)."""
        ...


@runtime_checkable
class Prefetching(Protocol):
    """A source that can fetch and verify a version's bundle ahead of its load."""

    def prefetch(self, event: ModelChanged) -> bool:
        """Download and verify, not load (blocking); False when it was on disk already.
        Raises ModelRefused."""
        ...


class Staged(Protocol):
    """A version staged by a :class:`Staging` source: checked next, or discarded."""

    def check(self, served: LoadedModel | None) -> LoadedModel:
        """Make room (the served version's weights out of memory; nothing reads them
        meanwhile), then run the reference check (blocking); raise ModelRefused."""
        ...

    def discard(self) -> None: ...


@runtime_checkable
class Staging(Protocol):
    """A source whose load can stop short of the reference check (:meth:`stage`)."""

    def stage(self, event: ModelChanged) -> Staged:
        """Download, verify and build the session (blocking); raise ModelRefused."""
        ...


Listener = Callable[[LoadedModel | None, LoadedModel], None]
RefusalListener = Callable[[ModelChanged, ModelRefused], None]


@dataclass
class ModelSlot:
    source: ModelSource
    name: str
    alias: str
    on_swap: Listener = lambda old, new: None
    on_refuse: RefusalListener = lambda event, error: None
    on_withdraw: Callable[[LoadedModel], None] = lambda old: None
    current: LoadedModel | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Held while a staged version is checked and swapped in: no batch runs meanwhile.
    between_batches: asyncio.Lock = field(default_factory=asyncio.Lock)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def concerns(self, event: ModelChanged) -> bool:
        return event.model_name == self.name and event.alias == self.alias

    def serves(self, event: ModelChanged) -> bool:
        return (
            self.current is not None
            and self.current.version == event.version
            and self.current.sha256 == event.sha256
        )

    async def offer(self, event: ModelChanged, *, only_if_empty: bool = False) -> bool:
        """Load ``event``'s version and swap it in; False if refused or not for this slot.

        ``only_if_empty`` is for answers from the registry fallback, which must never replace
        a model that an event from the models topic brought in meanwhile.
        """
        if not self.concerns(event):
            return False
        try:
            return await self.load(event, only_if_empty=only_if_empty)
        except ModelRefused:
            return False

    async def load(self, event: ModelChanged, *, only_if_empty: bool = False) -> bool:
        """Like :meth:`offer` for an event of this slot, but a refusal raises ModelRefused
        (logged and reported first), so a caller can retry it (``workers.reload``)."""
        async with self._lock:  # one load at a time, in the order offered
            if self.serves(event):
                return True
            if only_if_empty and self.current is not None:
                return False
            log.info(
                "loading %s version %s (sha256 %s) from %s",
                event.model_name,
                event.version,
                event.sha256[:12],
                event.artifact_uri,
            )
            if isinstance(self.source, Staging):
                staged = await self._attempt(event, self.source.stage, event)
                try:
                    async with self.between_batches:  # the served version answers nothing now
                        loaded = await self._attempt(event, staged.check, self.current)
                        self._swap(loaded)
                finally:
                    staged.discard()  # only if never checked (cancelled while waiting)
                await asyncio.to_thread(trim)  # what the old session and the build freed
            else:
                self._swap(await self._attempt(event, self.source.load, event))
            return True

    async def _attempt(self, event: ModelChanged, step: Callable[[_In], _Out], arg: _In) -> _Out:
        """One blocking step of a load, in a thread; any failure is a refusal, reported."""
        try:
            return await asyncio.to_thread(step, arg)
        except ModelRefused as exc:
            self._refuse(event, exc)
            raise
        except Exception as exc:  # any other failure also keeps the old model
            refused = ModelRefused("load", f"{type(exc).__name__}: {exc}")
            self._refuse(event, refused)
            raise refused from exc

    def _swap(self, loaded: LoadedModel) -> None:
        old, self.current = self.current, loaded  # the swap: one assignment
        self.ready.set()
        log.info(
            "now serving %s version %s (was %s)",
            loaded.name,
            loaded.version,
            old.version if old else "nothing",
        )
        self.on_swap(old, loaded)
        if old is not None and old.path is not None and old.path != loaded.path:
            shutil.rmtree(old.path, ignore_errors=True)

    def withdraw(self) -> None:
        """The alias is gone (a challenger withdrawn): serve nothing from the next batch on."""
        if self.current is None:
            return
        log.info("alias %s withdrawn: no longer serving %s version %s", self.alias,
                 self.current.name, self.current.version)  # fmt: skip
        old, self.current = self.current, None
        self.ready.clear()
        self.on_withdraw(old)

    def _refuse(self, event: ModelChanged, error: ModelRefused) -> None:
        log.error(
            "refused %s version %s at %s: %s; still serving %s",
            event.model_name,
            event.version,
            error.stage,
            error.reason,
            self.current.version if self.current else "nothing",
        )
        self.on_refuse(event, error)
