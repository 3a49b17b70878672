"""The first start's model (deploy.local.bootstrap): which data it trains on, and that the
settings it hands the training command are ones the training reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local import bootstrap
from training.settings import SHARED_YELP, Settings


def test_the_shared_data_is_where_training_looks_for_it() -> None:
    assert bootstrap.SHARED_YELP == SHARED_YELP


def test_without_shared_data_the_sample_is_used_with_its_gates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bootstrap, "SHARED_YELP", tmp_path / "absent")
    data = bootstrap.training_data({})
    assert "data/sample/" in data.description
    assert "accuracy floor 0.8" in data.description
    for key, value in data.settings.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # what `python -m training train` reads from that environment
    assert settings.train_path == bootstrap.SAMPLE / "train.csv.gz"
    assert settings.test_path == bootstrap.SAMPLE / "test.csv.gz"
    assert settings.train_path.is_file()
    assert settings.test_path.is_file()
    assert (settings.fast.buckets, settings.fast.epochs) == (1 << 16, 4)
    assert settings.export.accuracy_floor == 0.8
    assert settings.export.behaviour_min_pass_rate == 0.6


def test_shared_data_or_a_given_path_keep_the_release_gates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = tmp_path / "yelp"
    shared.mkdir()
    for name in ("train.csv.gz", "test.csv.gz"):
        (shared / name).write_bytes(b"")
    monkeypatch.setattr(bootstrap, "SHARED_YELP", shared)
    data = bootstrap.training_data({})
    assert data.settings == {}
    assert str(shared / "train.csv.gz") in data.description
    given = bootstrap.training_data({"RS_TRAIN_TRAIN_PATH": "/data/mine.csv"})
    assert given.settings == {}
    assert "RS_TRAIN_TRAIN_PATH (/data/mine.csv)" in given.description
