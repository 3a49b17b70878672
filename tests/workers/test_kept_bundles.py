"""The worker's registry source keeps the bundle served and the one before it: moving back (a
rollback) reads it from disk, unchanged since its sha256 was verified, instead of downloading
it; and it fetches the next version ahead of its move, verified on arrival and again when
loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import ModelChanged
from deploy.local.launcher import LocalStack
from inference.registry import serving_version
from tests.serving import mlflow_client, register, unique
from workers.models import ModelRefused
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
    _, (first, second, third) = three_versions(stack, tmp_path)
    cache = tmp_path / "cache"
    source = MlflowModelSource(stack.mlflow_uri, cache_dir=cache)
    source.load(first)

    assert source.prefetch(second)  # fetched and verified, not loaded
    assert not source.prefetch(second)  # on disk already
    assert not source.prefetch(first)  # the one served is on disk
    loaded = source.load(second)
    assert "prefetched" in loaded.timings
    assert "download" not in loaded.timings
    assert loaded.version == second.version

    # A newer announcement replaces the bundle fetched ahead; the kept ones stay.
    assert source.prefetch(third)
    forged = third.model_copy(update={"version": "99", "sha256": "0" * 64})
    with pytest.raises(ModelRefused) as refused:
        source.prefetch(forged)
    assert refused.value.stage == "verify"
    assert len(list(cache.iterdir())) == KEPT_BUNDLES + 1
    assert "prefetched" in source.load(third).timings
    assert "reuse" in source.load(second).timings  # the rollback target is still on disk
