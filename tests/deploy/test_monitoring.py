"""deploy/monitoring: the alerting rules load in Prometheus and pass their promtool unit tests.

promtool is Debian's (`make test` installs the prometheus package); a missing tool fails the
test with that instruction rather than skipping it, so a check can never pass by not running.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.local.monitoring import (
    JOBS,
    alertmanager_config,
    ensure_key,
    gateway_keys_env,
    prometheus_config,
    write_targets,
    write_yaml,
)
from deploy.local.settings import StackSettings
from deploy.monitoring import prometheusrule
from gateway.auth import KeyRecord, Role, hash_key
from tests.deployrender import DEPLOY, K8S, find, of_kind, overlay

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


# --- the local stack's generated configuration ----------------------------------------------


def local_settings(tmp_path: Path, **overrides: object) -> StackSettings:
    # Explicit over the environment (the stack fixture sets RS_STACK_MONITORING=false).
    defaults = {"state_dir": tmp_path / "state", "monitoring": True}
    return StackSettings.model_validate({**defaults, **overrides})


def test_generated_prometheus_config_is_valid_and_scrapes_every_service(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, scrape_interval_s=0.5)
    targets = write_targets(settings)
    config = prometheus_config(settings, targets)
    path = write_yaml(tmp_path / "prometheus.yml", config)
    result = promtool("check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"prometheus", "alertmanager", "workers", "registry-watcher", "stats", "gateway"}
    assert config["global"]["scrape_interval"] == "500ms"
    assert config["global"]["scrape_timeout"] == "500ms"  # never longer than the interval
    workers = json.loads((targets / "workers.json").read_text())
    assert workers == [{"targets": ["127.0.0.1:9101"], "labels": {"__scheme__": "http"}}]


def test_generated_alertmanager_config_is_valid_and_posts_to_the_gateway(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    record = ensure_key(settings)
    path = write_yaml(tmp_path / "alertmanager.yml", alertmanager_config(settings))
    tool = shutil.which("amtool")
    assert tool, "amtool is missing: run `make monitoring` (Debian's prometheus-alertmanager)"
    result = subprocess.run(
        [tool, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [receiver] = yaml.safe_load(path.read_text())["receivers"]
    [hook] = receiver["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:8000/v1/admin/alerts"
    key = Path(hook["http_config"]["authorization"]["credentials_file"])
    assert key.stat().st_mode & 0o077 == 0  # only the owner reads the key
    assert (record.role, record.sha256) == (Role.ADMIN, hash_key(key.read_text()))
    assert ensure_key(settings) == record  # made once, kept


def test_the_gateway_gets_alertmanagers_key_beside_the_given_ones() -> None:
    record = KeyRecord(name="alertmanager", role=Role.ADMIN, sha256="a" * 64)
    given = json.dumps([{"name": "ui", "role": "client", "sha256": "b" * 64}])
    keys = json.loads(gateway_keys_env(record, given))
    assert [k["name"] for k in keys] == ["ui", "alertmanager"]
    assert json.loads(gateway_keys_env(record, gateway_keys_env(record, None))) == [
        {"name": "alertmanager", "role": "admin", "sha256": "a" * 64}
    ]


def test_monitoring_runs_with_the_stack_unless_turned_off_or_elsewhere(tmp_path: Path) -> None:
    assert local_settings(tmp_path).runs_prometheus
    assert not local_settings(tmp_path, monitoring=False).runs_alertmanager
    assert not local_settings(tmp_path, prometheus_url="http://prom.example:9090").runs_prometheus


# --- Kubernetes: the same rules as a PrometheusRule, scrape targets as ServiceMonitors ------


def test_the_prometheusrule_is_rules_yml() -> None:
    """One source: the manifest's groups are the rules file's, and the file is up to date."""
    manifest = yaml.safe_load(prometheusrule.MANIFEST.read_text())
    assert manifest["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    assert prometheusrule.MANIFEST.read_text() == prometheusrule.render()


def test_the_rendered_prometheusrule_loads_in_prometheus(tmp_path: Path) -> None:
    """What the cluster gets (after kustomize) passes promtool: no schema needed for that."""
    [rule] = of_kind(overlay("prod"), "PrometheusRule")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["prod", "prod-keda"])
def test_a_servicemonitor_scrapes_each_service_where_it_serves_metrics(name: str) -> None:
    manifests = overlay(name)
    monitors = {m["metadata"]["name"]: m for m in of_kind(manifests, "ServiceMonitor")}
    assert set(monitors) == set(JOBS.values())  # the job label is the Service's name
    for job, monitor in monitors.items():
        service = find(manifests, "Service", job)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= (
            service["metadata"]["labels"].items()
        )
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    # The gateway's metrics come from its operations port, plain HTTP in the cluster even
    # where its API is HTTPS (components/gateway-backend-tls); the Ingress never routes it.
    assert monitors["gateway"]["spec"]["endpoints"][0]["port"] == "ops"
    assert "scheme" not in monitors["gateway"]["spec"]["endpoints"][0]
    ingress = find(manifests, "Ingress", "gateway")
    routed = {
        path["backend"]["service"]["port"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert routed == {"http"}


def test_dev_needs_no_prometheus_operator() -> None:
    kinds = {m["kind"] for m in overlay("dev")}
    assert not kinds & {"PrometheusRule", "ServiceMonitor"}


@pytest.mark.parametrize("name", ["prod", "prod-keda"])
def test_the_cluster_alertmanager_posts_to_the_gateway_with_a_key_from_the_secret(
    name: str,
) -> None:
    manifests = overlay(name)
    [config] = of_kind(manifests, "AlertmanagerConfig")
    [receiver] = config["spec"]["receivers"]
    assert config["spec"]["route"]["receiver"] == receiver["name"]
    [hook] = receiver["webhookConfigs"]
    service = find(manifests, "Service", "gateway")
    namespace = service["metadata"]["namespace"]
    [port] = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    # prod's gateway serves HTTPS on the Service's port (components/gateway-backend-tls).
    assert hook["url"] == f"https://gateway.{namespace}.svc:{port['port']}/v1/admin/alerts"
    credentials = hook["httpConfig"]["authorization"]["credentials"]
    assert credentials == {"name": "reviewstream-secrets", "key": "alertmanager-api-key"}
    assert hook["sendResolved"] is True
