"""The worker's registry source keeps the bundle served and the one before it: moving back (a
rollback) reads it from disk, unchanged since its sha256 was verified, instead of downloading
it; and it fetches the next version ahead of its move, verified on arrival and again when
loaded, with its ONNX Runtime session built ahead. At a hot reload, the served version's
weights pages leave memory before the new version's reference check faults its own in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts import ModelChanged
from deploy.local.launcher import LocalStack
from inference.bundle import WEIGHTS_FILE
from inference.mapped_pages import PAGEMAP, mappings
from inference.registry import serving_version
from tests.serving import REVIEWS, mlflow_client, register, unique
from workers.models import LoadedModel, ModelRefused
from workers.registry import KEPT_BUNDLES, MlflowModelSource


def three_versions(stack: LocalStack, tmp_path: Path) -> tuple[str, list[ModelChanged]]:
    """A new model with three versions, each promoted in turn: (its name, their events)."""
    client = mlflow_client(stack)
    name = unique("model")
    events = []
    for seed in (1, 2, 3):
        version = register(client, name, tmp_path, seed=seed)
        event = serving_version(client, name, "production")
        assert event is not None
        assert event.version == version
        events.append(event)
    (tmp_path / "cache").mkdir()
    return name, events


def test_a_version_loaded_before_is_read_from_disk_and_a_tampered_one_downloaded_again(
    stack: LocalStack, tmp_path: Path
) -> None:
    name, (first, second, third) = three_versions(stack, tmp_path)
    cache = tmp_path / "cache"
    source = MlflowModelSource(stack.mlflow_uri, cache_dir=cache)

    assert "download" in source.load(first).timings
    assert "download" in source.load(second).timings
    back = source.load(first)  # a rollback
    assert "reuse" in back.timings
    assert "download" not in back.timings
    assert back.version == first.version
    assert back.predictor.predict_described(["great food"])[0].shape == (1,)

    # The second version's kept bytes changed on disk: not trusted, downloaded again.
    (model,) = cache.glob(f"{name}-{second.version}-*/**/model.onnx")
    tampered = bytearray(model.read_bytes())
    tampered[-1] ^= 0xFF
    model.write_bytes(bytes(tampered))
    again = source.load(second)
    assert "download" in again.timings
    assert "reuse" not in again.timings

    source.load(third)  # only the last ones stay on disk
    assert len(list(cache.iterdir())) == KEPT_BUNDLES
    assert not list(cache.glob(f"{name}-{first.version}-*"))


def test_a_version_fetched_ahead_is_loaded_from_disk_and_a_bad_one_is_refused_ahead(
    stack: LocalStack, tmp_path: Path
) -> None:
    name, (first, second, third) = three_versions(stack, tmp_path)
    cache = tmp_path / "cache"
    source = MlflowModelSource(stack.mlflow_uri, cache_dir=cache)
    source.load(first)

    assert source.prefetch(second)  # fetched and verified, not loaded
    assert not source.prefetch(second)  # on disk already
    assert not source.prefetch(first)  # the one served is on disk
    loaded = source.load(second)
    assert "prefetched" in loaded.timings
    assert "download" not in loaded.timings
    assert "session ahead" in loaded.timings  # its session was built with the fetch
    assert loaded.version == second.version
    assert loaded.predictor.predict_described(["great food"])[0].shape == (1,)

    # A newer announcement replaces the bundle fetched ahead; the kept ones stay.
    assert source.prefetch(third)
    forged = third.model_copy(update={"version": "99", "sha256": "0" * 64})
    with pytest.raises(ModelRefused) as refused:
        source.prefetch(forged)
    assert refused.value.stage == "verify"
    assert len(list(cache.iterdir())) == KEPT_BUNDLES + 1
    # Its files touched since they were verified: hashed again, and its session built anew
    # from what was checked, not the one built ahead.
    (data,) = cache.glob(f"{name}-{third.version}-*/**/bundle.json")
    data.touch()
    reloaded = source.load(third)
    assert "prefetched" in reloaded.timings
    assert "session" in reloaded.timings
    assert "session ahead" not in reloaded.timings
    assert "reuse" in source.load(second).timings  # the rollback target is still on disk


def resident_kib(cache: Path, loaded: LoadedModel) -> int:
    """How much of the version's weights file (kept in ``cache``) is in this process's memory."""
    (weights,) = cache.glob(f"{loaded.name}-{loaded.version}-*/**/{WEIGHTS_FILE}")
    return sum(m.resident_kib for m in mappings(weights))


@pytest.mark.skipif(not PAGEMAP.exists(), reason="Linux's /proc/self/pagemap")
def test_the_served_weights_leave_memory_before_the_check_and_serve_again_if_it_fails(
    stack: LocalStack, tmp_path: Path
) -> None:
    client = mlflow_client(stack)
    name = unique("model")
    events = []
    for seed, wrong in ((1, False), (2, True), (3, False), (4, False)):
        # 256 KiB of weights each, in model.onnx.data; the second fails its reference check
        version = register(client, name, tmp_path, seed=seed, buckets=2**16, wrong_reference=wrong)
        event = serving_version(client, name, "production")
        assert event is not None
        assert event.version == version
        events.append(event)
    first, misreferenced, third, fourth = events
    cache = tmp_path / "cache"
    cache.mkdir()
    source = MlflowModelSource(stack.mlflow_uri, cache_dir=cache)
    served = source.load(first)
    answers = served.predictor.predict_described(REVIEWS)[0]
    assert resident_kib(cache, served) > 0

    # Its check fails: the served weights were dropped first, and fault back as it answers.
    staged = source.stage(misreferenced)
    with pytest.raises(ModelRefused) as refused:
        staged.check(served)
    assert refused.value.stage == "reference"
    assert resident_kib(cache, served) == 0
    assert np.array_equal(served.predictor.predict_described(REVIEWS)[0], answers)
    assert resident_kib(cache, served) > 0
    assert not list(cache.glob(f"{name}-{misreferenced.version}-*"))  # its folder went

    # A good one: checked with only its own weights in memory, the steps in that order.
    loaded = source.stage(third).check(served)
    assert list(loaded.timings)[-2:] == ["drop served pages", "reference"]
    assert resident_kib(cache, served) == 0
    assert resident_kib(cache, loaded) > 0

    # A served bundle whose files changed since verified keeps its pages: they would come
    # back from other bytes.
    (manifest,) = cache.glob(f"{name}-{third.version}-*/**/bundle.json")
    manifest.touch()
    source.stage(fourth).check(loaded)
    assert resident_kib(cache, loaded) > 0
