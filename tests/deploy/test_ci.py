"""The CI recipe for continuous training (deploy/ci/retrain.yml): it runs ``retrain`` on every
push to main and on a schedule, never two at once, with settings that training reads."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from export.settings import Settings as ExportSettings
from tests.deployrender import DEPLOY
from training.settings import RetrainSettings, Settings

WORKFLOW = DEPLOY / "ci" / "retrain.yml"


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_it_retrains_on_push_and_on_a_schedule_one_at_a_time() -> None:
    flow = workflow()
    triggers = flow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["schedule"][0]["cron"]
    assert flow["concurrency"] == {"group": "retrain", "cancel-in-progress": False}
    (job,) = flow["jobs"].values()
    commands = [step.get("run", "") for step in job["steps"]]
    assert "make install" in commands
    assert any("python -m training retrain --on-alerts" in c for c in commands)


def test_every_setting_it_gives_is_one_training_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    (job,) = workflow()["jobs"].values()
    given = {k for k in job["env"] if k.startswith(("RS_TRAIN_", "RS_EXPORT_"))}
    read: set[str] = set()
    for settings in (Settings, RetrainSettings, ExportSettings):
        prefix = str(settings.model_config.get("env_prefix", ""))
        read |= {f"{prefix}{name}".upper() for name in settings.model_fields}
    assert given <= read, given - read
    monkeypatch.setenv(
        "RS_TRAIN_RETRAIN_MIN_NEW_FEEDBACK", job["env"]["RS_TRAIN_RETRAIN_MIN_NEW_FEEDBACK"]
    )
    assert RetrainSettings().min_new_feedback == 1000
