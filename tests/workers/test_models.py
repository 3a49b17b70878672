"""ModelSlot: a version gets in only when every loading step passed; otherwise the old one stays."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from numpy.typing import NDArray

from contracts import ModelChanged, RequestFeatures
from workers.models import LoadedModel, ModelRefused, ModelSlot


class ConstantPredictor:
    def __init__(self, p: float) -> None:
        self.p = p

    def predict_described(
        self, texts: list[str]
    ) -> tuple[NDArray[np.float32], list[RequestFeatures]]:
        features = [RequestFeatures(words=len(t.split())) for t in texts]
        return np.full(len(texts), self.p, dtype=np.float32), features


class FakeSource:
    """Versions by number; a version listed in ``broken`` fails at the given stage."""

    def __init__(self, broken: dict[str, Exception] | None = None) -> None:
        self.broken = broken or {}
        self.loads: list[str] = []

    def serving(self, name: str, alias: str) -> ModelChanged | None:
        return None

    def load(self, event: ModelChanged) -> LoadedModel:
        self.loads.append(event.version)
        if event.version in self.broken:
            raise self.broken[event.version]
        return LoadedModel(
            event.model_name,
            event.version,
            event.sha256,
            ConstantPredictor(int(event.version) / 10),
        )


def event(version: str, *, name: str = "m", alias: str = "production") -> ModelChanged:
    return ModelChanged(
        model_name=name,
        version=version,
        alias=alias,
        artifact_uri=f"mem://{version}",
        sha256=f"{int(version):064x}",
    )


def slot(source: FakeSource) -> tuple[ModelSlot, list[tuple[str | None, str]], list[str]]:
    swaps: list[tuple[str | None, str]] = []
    refusals: list[str] = []
    s = ModelSlot(
        source,
        "m",
        "production",
        on_swap=lambda old, new: swaps.append((old.version if old else None, new.version)),
        on_refuse=lambda ev, err: refusals.append(f"{ev.version}:{err.stage}"),
    )
    return s, swaps, refusals


async def test_a_loaded_version_is_swapped_in_and_the_slot_becomes_ready() -> None:
    s, swaps, _ = slot(FakeSource())
    assert not s.ready.is_set()
    assert await s.offer(event("1"))
    assert s.ready.is_set()
    assert await s.offer(event("2"))
    assert s.current is not None
    assert s.current.version == "2"
    assert swaps == [(None, "1"), ("1", "2")]


@pytest.mark.parametrize(
    ("error", "stage"),
    [
        (ModelRefused("verify", "bundle sha256 is x, expected y"), "verify"),
        (ModelRefused("reference", "max abs difference 0.3"), "reference"),
        (RuntimeError("onnxruntime could not parse the graph"), "load"),
    ],
)
async def test_a_failing_version_is_refused_and_the_old_one_keeps_serving(
    error: Exception, stage: str
) -> None:
    s, swaps, refusals = slot(FakeSource(broken={"2": error}))
    await s.offer(event("1"))
    assert not await s.offer(event("2"))
    assert s.current is not None
    assert s.current.version == "1"
    assert refusals == [f"2:{stage}"]
    assert swaps == [(None, "1")]


async def test_a_refused_first_version_leaves_the_slot_not_ready() -> None:
    s, _, refusals = slot(FakeSource(broken={"1": ModelRefused("download", "connection refused")}))
    assert not await s.offer(event("1"))
    assert s.current is None
    assert not s.ready.is_set()
    assert refusals == ["1:download"]


async def test_other_models_aliases_and_the_version_in_service_are_not_loaded() -> None:
    source = FakeSource()
    s, _, _ = slot(source)
    await s.offer(event("1"))
    assert not await s.offer(event("2", name="other"))
    assert not await s.offer(event("2", alias="staging"))
    assert await s.offer(event("1"))
    assert source.loads == ["1"]


async def test_a_registry_answer_never_replaces_a_model_in_service() -> None:
    source = FakeSource()
    s, _, _ = slot(source)
    await s.offer(event("2"))
    assert not await s.offer(event("1"), only_if_empty=True)
    assert s.current is not None
    assert s.current.version == "2"


async def test_concurrent_offers_load_one_at_a_time_in_order() -> None:
    source = FakeSource()
    s, swaps, _ = slot(source)
    await asyncio.gather(s.offer(event("1")), s.offer(event("2")), s.offer(event("3")))
    assert swaps == [(None, "1"), ("1", "2"), ("2", "3")]


class FakeStaged:
    def __init__(self, source: StagingSource, event: ModelChanged) -> None:
        self.source = source
        self.event = event

    def check(self, served: LoadedModel | None) -> LoadedModel:
        # What the check saw: the version it made room for, and whether batches were held back.
        lock = self.source.between_batches
        self.source.checks.append((served.version if served else None, lock.locked()))
        return self.source.load(self.event)

    def discard(self) -> None:
        """Nothing on disk to delete."""


class StagingSource(FakeSource):
    """Loads staged: the slot runs each check itself, between batches."""

    def __init__(self, broken: dict[str, Exception] | None = None) -> None:
        super().__init__(broken)
        self.between_batches = asyncio.Lock()
        self.checks: list[tuple[str | None, bool]] = []

    def stage(self, event: ModelChanged) -> FakeStaged:
        return FakeStaged(self, event)


async def test_a_staged_version_is_checked_between_batches_with_room_made_for_it() -> None:
    source = StagingSource(broken={"3": ModelRefused("reference", "max abs difference 0.5")})
    s, swaps, refusals = slot(source)
    s.between_batches = source.between_batches  # the worker's batch lock
    assert await s.offer(event("1"))
    assert await s.offer(event("2"))
    assert not await s.offer(event("3"))  # its check fails: the second one serves on
    assert source.checks == [(None, True), ("1", True), ("2", True)]
    assert not s.between_batches.locked()
    assert s.current is not None
    assert s.current.version == "2"
    assert swaps == [(None, "1"), ("1", "2")]
    assert refusals == ["3:reference"]
