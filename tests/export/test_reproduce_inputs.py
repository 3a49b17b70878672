"""What --reproduce feeds the recorded commit: the recorded parameters, the verified data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from export.reproduce import (
    NOT_COMPARED,
    Recorded,
    ReproduceError,
    Reproduction,
    Row,
    checkout,
    fetch_data,
    render_reproduction,
    training_env,
)
from training.families import family_for
from training.pipeline import run_params
from training.settings import FastSettings, Settings
from training.tracking import flat_params


def recorded_from(settings: Settings) -> Recorded:
    return Recorded(
        run_id="r",
        experiment="e",
        commit="c",
        dirty=False,
        lock_sha256="l",
        family=settings.family,
        device="cpu",
        params=flat_params(run_params(settings, family_for(settings))),
        data_files={},
        data_sha256={},
    )


def test_the_recorded_parameters_come_back_as_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unusual values everywhere, threads None included (only JSON can say None).
    original = Settings(
        seed=7,
        validation_fraction=0.2,
        max_train_rows=500,
        positive_min_stars=4.0,
        fast=FastSettings(buckets=1 << 12, dim=24, learning_rate=0.25, threads=None, epochs=5),
    )
    params_file = tmp_path / "params.json"
    params_file.write_text('{"fast": {"dim": 8, "epochs": 9}}')  # ignored: recorded ones only
    monkeypatch.setenv("RS_TRAIN_FAST__DIM", "64")  # the caller's environment is not passed on
    env = training_env(
        recorded_from(original), tmp_path / "a.csv", tmp_path / "b.csv", "sqlite://", "m", tmp_path
    )
    assert "RS_TRAIN_FAST__DIM" not in env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RS_TRAIN_FAST__DIM")
    again = Settings()
    assert again.fast == original.fast
    assert again.train_path == tmp_path / "a.csv"
    before = recorded_from(original).params
    after = recorded_from(again).params
    differing = {k for k in before if before[k] != after.get(k)}
    # Gates and registry names do not change what is trained; the reproduction has its own name.
    assert {k for k in differing if not k.startswith("export.")} <= NOT_COMPARED
    assert again.export.model_name == "m"


def test_a_data_file_whose_bytes_changed_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "train.csv"
    source.write_text("text,label\nok,1\n")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    copied = fetch_data((str(source), digest), tmp_path / "copy")
    assert copied.read_bytes() == source.read_bytes()
    source.write_text("text,label\nok,0\n")
    with pytest.raises(ReproduceError, match="has changed since the run"):
        fetch_data((str(source), digest), tmp_path / "again")
    with pytest.raises(ReproduceError, match="cannot read"):
        fetch_data((str(tmp_path / "gone.csv"), digest), tmp_path / "again")


def test_an_unknown_commit_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(ReproduceError, match="not in the repository"),
        checkout("0" * 40, tmp_path / "src"),
    ):
        pass


def test_figures_must_be_identical_or_within_the_tolerance() -> None:
    rows = [Row("test_accuracy", 0.9, 0.9), Row("test_roc_auc", 0.95, 0.9501)]
    exact = Reproduction(recorded_from(Settings()), "r2", "store", 0.0, rows, [])
    assert not exact.agrees
    table = render_reproduction(exact)
    assert "test_roc_auc" in table
    assert table.count("MISMATCH") == 1
    assert "DO NOT agree (identical required)" in table
    loose = Reproduction(recorded_from(Settings()), "r2", "store", 0.001, rows, [])
    assert loose.agrees
    assert "agree (within 0.001 required)" in render_reproduction(loose)
    missing = Reproduction(
        recorded_from(Settings()), "r2", "store", 0.001, [Row("x", 1.0, None)], []
    )
    assert not missing.agrees
    different = Reproduction(
        recorded_from(Settings()), "r2", "store", 0.0, [], ["seed: 1, recorded 2"]
    )
    assert not different.agrees
    assert "DIFFERENT INPUT: seed" in render_reproduction(different)
