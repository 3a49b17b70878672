"""The fingerprint: each part changes with its own input only, and says which one changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.fingerprint import (
    NOT_PARAMS,
    PARTS,
    Fingerprint,
    code_digest,
    fingerprint,
    training_params,
)
from training.settings import CODE_PACKAGES, ROOT, FastSettings, Settings

PACKAGES = ("training", "contracts")


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A copy of two packages and the lock file, to edit."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copyfile(ROOT / "uv.lock", tmp_path / "uv.lock")
    return tmp_path


def print_of(settings: Settings, code: Path, snapshot: str = "a" * 64) -> Fingerprint:
    return fingerprint(
        settings, snapshot_digest=snapshot, test_digest="t" * 64, code_root=code,
        code_packages=PACKAGES,
    )  # fmt: skip


def test_the_same_inputs_give_the_same_fingerprint(code: Path) -> None:
    first, again = print_of(Settings(), code), print_of(Settings(), code)
    assert first == again
    assert len(first.value) == 64
    assert first.changed_since(first.tags()) == []
    assert set(first.tags()) == {"fingerprint", *(f"fingerprint.{p}" for p in PARTS)}


def test_each_input_changes_its_own_part(code: Path) -> None:
    base = print_of(Settings(), code)
    assert base.changed_since(print_of(Settings(), code, snapshot="b" * 64).tags()) == ["data"]
    other_params = Settings(fast=FastSettings(epochs=5))
    assert base.changed_since(print_of(other_params, code).tags()) == ["params"]
    source = code / "training" / "trainer.py"
    source.write_text(source.read_text() + "\n# a comment is a change\n")
    assert base.changed_since(print_of(Settings(), code).tags()) == ["code"]
    lock = code / "uv.lock"
    lock.write_text(lock.read_text() + "\n")
    assert print_of(Settings(), code).changed_since(base.tags()) == ["code", "lock"]


def test_a_new_source_file_or_a_rename_changes_the_code(code: Path) -> None:
    before = code_digest(code, PACKAGES)
    (code / "training" / "new.py").write_text("")
    added = code_digest(code, PACKAGES)
    assert added != before
    (code / "training" / "new.py").rename(code / "training" / "other.py")
    renamed = code_digest(code, PACKAGES)
    assert renamed not in {before, added}
    (code / "training" / "other.pyc").write_bytes(b"compiled")  # not source: no change
    assert code_digest(code, PACKAGES) == renamed


def test_where_things_are_is_not_a_parameter(tmp_path: Path) -> None:
    """Paths (their data is in the data part), servers and display are not inputs."""
    here = Settings()
    elsewhere = Settings(
        train_path=tmp_path / "t.csv", test_path=tmp_path / "u.csv", experiment="x",
        progress=False, promote=False,
    )  # fmt: skip
    assert training_params(here) == training_params(elsewhere)
    params = training_params(here)
    assert params["fast.epochs"] == 3
    assert params["export.accuracy_floor"] == 0.95
    assert not any(k.startswith(("export.kafka", "export.database")) for k in params)


def test_the_default_code_packages_exist() -> None:
    assert code_digest(ROOT, CODE_PACKAGES)
    with pytest.raises(FileNotFoundError):
        code_digest(ROOT, ("no_such_package",))


@pytest.mark.parametrize("family", ["fast", "accurate"])
def test_the_parameters_are_the_ones_the_run_logs(family: str) -> None:
    """Read from the settings (no torch), they are what ``run_params`` logs on the run."""
    from training.families import family_for
    from training.pipeline import run_params

    settings = Settings(family=family)
    logged = run_params(settings, family_for(settings))
    logged.pop("accurate.encoder", None)  # a constant of the code, which the code part covers
    assert training_params(settings) == {k: v for k, v in logged.items() if k not in NOT_PARAMS}
