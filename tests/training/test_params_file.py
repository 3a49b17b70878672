"""The parameters file sits below the environment: tuned values are defaults, nothing more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.settings import FastSettings, Settings
from training.tune import write_params


def test_the_params_file_replaces_defaults_and_the_environment_still_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tmp_path / "params.json"
    write_params(params, "fast", {"dim": 24, "epochs": 6}, {"run_id": "r1"})
    monkeypatch.setenv("RS_TRAIN_PARAMS_FILE", str(params))
    tuned = Settings()
    assert (tuned.fast.dim, tuned.fast.epochs) == (24, 6)
    assert tuned.fast.buckets == FastSettings().buckets  # not in the file: the code's default
    monkeypatch.setenv("RS_TRAIN_FAST__EPOCHS", "2")
    assert (Settings().fast.dim, Settings().fast.epochs) == (24, 2)
    assert Settings(fast=FastSettings(dim=8)).fast.dim == 8  # an explicit value wins
    assert Settings(params_file=tmp_path / "none.json").fast.dim == FastSettings().dim


def test_writing_params_keeps_the_other_sections(tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"accurate": {"epochs": 1}}))
    write_params(params, "fast", {"dim": 32}, {"run_id": "r2"})
    write_params(params, "fast", {"dim": 16}, {"run_id": "r3"})
    content = json.loads(params.read_text())
    assert content["accurate"] == {"epochs": 1}
    assert content["fast"] == {"dim": 16}
    assert content["tuning"]["fast"]["run_id"] == "r3"
    assert Settings(params_file=params).accurate.epochs == 1
