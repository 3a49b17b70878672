"""``python -m export shadow`` on a real MLflow registry: the challenger alias, its tags, the
gate rule shared with promotion, and promotion's shadow requirement."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.local.launcher import LocalStack
from export.__main__ import app
from export.registry import record_gates
from tests.serving import mlflow_client, register, synthetic_gate, unique


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_shadow_points_the_challenger_at_a_gated_version_and_stop_removes_it(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow_client(stack)
    name = unique("model")
    monkeypatch.setenv("RS_EXPORT_MODEL_NAME", name)
    v1 = register(client, name, tmp_path, seed=1)
    v2 = register(client, name, tmp_path, seed=2, promote=False, gates_pass=False)

    code, out = run("shadow", v2, "--reason", "try it")
    assert code == 1
    assert "not shadowed, gates failed" in out  # the same rule as promotion

    record_gates(client, client.get_model_version(name, v2), [synthetic_gate(passed=True)])
    code, out = run("shadow", v2, "--reason", "try it", "--by", "ana")
    assert code == 0, out
    assert f"'challenger' -> v{v2}" in out
    tags = client.get_model_version(name, v2).tags
    assert (tags["shadow_by"], tags["shadow_reason"]) == ("ana", "try it")
    assert tags["shadow_at"]
    assert client.get_model_version_by_alias(name, "production").version == v1  # untouched

    code, out = run("shadow", "--stop", "--reason", "seen enough")
    assert code == 0, out
    assert f"removed (was v{v2})" in out
    assert client.get_model_version(name, v2).tags["shadow_stopped_reason"] == "seen enough"
    code, out = run("shadow", "--stop", "--reason", "again")
    assert code == 1
    assert "nothing is in shadow" in out


def test_promotion_that_requires_a_shadow_needs_the_statistics_database(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    client = mlflow_client(stack)
    name = unique("model")
    monkeypatch.setenv("RS_EXPORT_MODEL_NAME", name)
    register(client, name, tmp_path, seed=1)
    v2 = register(client, name, tmp_path, seed=2, promote=False)
    record_gates(client, client.get_model_version(name, v2), [synthetic_gate(passed=True)])
    monkeypatch.setenv("RS_EXPORT_SHADOW_MIN_LABELLED", "50")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("RS_DATABASE_URL", raising=False)

    code, out = run("promote", v2, "--reason", "r")
    assert code == 1
    assert "DATABASE_URL (the statistics database) is not set" in out

    monkeypatch.setenv("DATABASE_URL", database_url)  # migrated, nothing shadowed yet
    code, out = run("promote", v2, "--reason", "r")
    assert code == 1
    assert "not shadowed enough: shadowed on 0 labelled reviews" in out

    monkeypatch.setenv("RS_EXPORT_SHADOW_MIN_LABELLED", "0")  # no requirement: promoted, and
    run("shadow", v2, "--reason", "try it")  # a challenger promoted leaves the shadow
    code, out = run("promote", v2, "--reason", "r")
    assert code == 0, out
    assert "'challenger' removed (now serving)" in out
    assert client.get_model_version_by_alias(name, "production").version == v2
