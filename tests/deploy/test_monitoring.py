"""deploy/monitoring: the alerting rules load in Prometheus and pass their promtool unit tests.

promtool is Debian's (`make test` installs the prometheus package); a missing tool fails the
test with that instruction rather than skipping it, so a check can never pass by not running.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deployrender import DEPLOY, K8S

MONITORING = DEPLOY / "monitoring"
RULES = MONITORING / "rules.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: run `make monitoring` (Debian's prometheus)", False)
    return subprocess.run(
        [tool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_load() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", MONITORING / "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_cover_every_alert() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((MONITORING / "rules_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    assert alerts == tested


def test_a_failing_unit_test_fails(tmp_path: Path) -> None:
    """The check has teeth: a test expecting a wrong label makes promtool exit non-zero."""
    text = (MONITORING / "rules_test.yml").read_text().replace("severity: critical}", "x: y}", 1)
    broken = tmp_path / "rules_test.yml"
    broken.write_text(text)
    shutil.copy(RULES, tmp_path / "rules.yml")
    assert promtool("test", "rules", broken).returncode != 0


def test_hardware_limits_are_the_workers_kubernetes_limits() -> None:
    """The CPU and memory alerts compare with the limits written in workers.yaml."""
    workers = yaml.safe_load_all((K8S / "base" / "workers.yaml").read_text())
    deployment = next(m for m in workers if m["kind"] == "Deployment")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "1", "memory": "1Gi"}, "update the constants in rules.yml too"
    rules = {r["alert"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"]
             for r in g["rules"]}  # fmt: skip
    assert rules["WorkerCpuNearLimit"].strip().endswith("> 0.9 * 1")
    assert rules["WorkerMemoryNearLimit"].strip().endswith(f"> 0.9 * {2**30}")
