"""The first start's model on the real MLflow: a registry that serves a version is left alone
(one line, then the process idles as honcho needs, and stops cleanly), and the stack adds the
process only when RS_STACK_BOOTSTRAP_MODEL is on. Training itself runs in
tests/deploy/test_first_start.py, from a fresh clone."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from mlflow import MlflowClient

from deploy.local.__main__ import services
from deploy.local.launcher import LocalStack
from deploy.local.settings import StackSettings
from tests.serving import Processes, eventually, register, unique


async def test_a_registry_that_serves_a_version_is_left_alone(
    stack: LocalStack, procs: Processes, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    name = unique("boot")
    version = register(client, name, tmp_path, seed=5)
    env = {**stack.env, "RS_EXPORT_MODEL_NAME": name}
    bootstrap = procs.start("deploy.local.bootstrap", env)
    said = f"the registry serves {name}@production version {version}: nothing to train"
    await eventually(lambda: said in bootstrap.log(), timeout_s=60, what=said)
    assert bootstrap.alive()  # idle, not exited: an exit stops the whole stack
    bootstrap.signal(signal.SIGTERM)
    assert await bootstrap.wait_exit(timeout_s=10) == 0
    assert "training" not in bootstrap.log()
    assert versions(client, name) == [version]  # nothing new registered


def versions(client: MlflowClient, name: str) -> list[str]:
    return [v.version for v in client.search_model_versions(f"name = '{name}'")]


@pytest.mark.parametrize(("setting", "runs"), [("true", True), ("false", False)])
def test_the_stack_runs_the_bootstrap_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, setting: str, runs: bool
) -> None:
    monkeypatch.setenv("RS_STACK_BOOTSTRAP_MODEL", setting)
    processes = services(StackSettings())
    assert {"workers", "registry_watcher", "stats", "gateway"} <= set(processes)
    assert ("bootstrap" in processes) is runs
