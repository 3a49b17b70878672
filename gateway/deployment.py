"""Which model the fleet serves, as this gateway knows it: the port behind "no model deployed".

The registry watcher announces every move of the serving alias on the compacted models topic
(``ModelChanged``, keyed by model name) and the workers load what it names, so that topic, read
from its beginning, says whether a model is deployed:

- ``unknown``: not read to its end yet (Kafka away, or just connected). Reviews go through as
  they always did: a wrong "no model" would refuse work that a worker could do.
- ``none``: read to its end and no model announced. No worker can answer, so a classification
  is refused at once (503 ``no_model``) instead of waiting for the reply timeout.
- ``deployed``: the latest announcement, which later ones replace.

``gateway.models_topic.ModelsTopic`` reads the real topic; unit tests hand in their own feed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from contracts import ModelChanged
from gateway.errors import ModelNotDeployed


class ModelState(StrEnum):
    UNKNOWN = "unknown"
    NONE = "none"
    DEPLOYED = "deployed"


@dataclass(frozen=True)
class Deployment:
    state: ModelState
    model_name: str | None = None
    version: str | None = None

    @classmethod
    def of(cls, latest: Mapping[str, ModelChanged]) -> Deployment:
        """The newest announcement among the latest one per model name, or none."""
        if not latest:
            return NO_MODEL
        event = max(latest.values(), key=lambda e: e.changed_at)
        return cls(ModelState.DEPLOYED, event.model_name, event.version)

    def require(self, *, retry_after_s: int) -> None:
        """Raise ModelNotDeployed when it is known that no model is deployed."""
        if self.state is ModelState.NONE:
            raise ModelNotDeployed(
                "no model is deployed yet: no worker can classify until a model version is "
                "promoted to the serving alias (the local stack trains and promotes one on its "
                "first start); retry in a few seconds",
                retry_after=retry_after_s,
            )


UNKNOWN = Deployment(ModelState.UNKNOWN)
NO_MODEL = Deployment(ModelState.NONE)


class Deployments:
    """The current deployment, and its changes for any number of readers."""

    def __init__(self, current: Deployment = UNKNOWN) -> None:
        self.current = current
        self._changed = asyncio.Event()

    def set(self, deployment: Deployment) -> None:
        if deployment == self.current:
            return
        self.current = deployment
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changes(self) -> AsyncIterator[Deployment]:
        """The current deployment at once, then each new one (the latest, if several came)."""
        while True:
            changed = self._changed
            yield self.current
            await changed.wait()


class ModelFeed(AbstractAsyncContextManager["ModelFeed", None], Protocol):
    """Started and stopped with ``async with``."""

    @property
    def current(self) -> Deployment: ...

    def changes(self) -> AsyncIterator[Deployment]: ...
