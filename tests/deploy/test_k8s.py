"""deploy/k8s: every overlay renders with kustomize and validates against the Kubernetes
OpenAPI schemas (kubernetes-validate ships them, so this runs offline)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError
from pydantic_settings import BaseSettings

from contracts.kafka_access import PRINCIPALS
from contracts.topics import KafkaSettings
from deploy.healthcheck import ENDPOINTS, HEALTH_PATH, READY_PATH
from deploy.local.postgres import MAX_LOCKS_PER_TRANSACTION
from export.settings import Settings as ExportSettings
from stats.roles import READER, WRITER
from tests.deployrender import (
    DEPLOY,
    DEPLOYED,
    K8S,
    OVERLAYS,
    Manifest,
    config_data,
    container,
    container_env,
    find,
    k8s_tree,
    kustomize_build,
    of_kind,
    overlay,
    render,
)
from training.__main__ import GATES_FAILED
from training.settings import RetrainSettings, Settings

# The oldest Kubernetes these manifests promise to work on, and the newest schemas shipped.
K8S_VERSIONS = ("1.30", "1.37")

# Custom resources have no schema in the Kubernetes OpenAPI: each is named here on purpose,
# so an unexpected kind (or a typo in apiVersion) still fails validation.
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"),  # components/keda
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("cert-manager.io/v1", "Certificate"),  # components/gateway-backend-tls
    ("kafka.strimzi.io/v1beta2", "Kafka"),  # external/
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaUser"),  # base/kafka/users.yaml
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "Database"),
    # components/monitoring: no schema vendored; tests/deploy/test_monitoring.py checks the
    # PrometheusRule's groups with promtool, the ServiceMonitors against the Services and
    # the AlertmanagerConfig's webhook against the gateway Service and the Secret.
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"),
}

RENDERED = [*(f"overlays/{name}" for name in OVERLAYS), "base", "external"]


def deployment(manifests: tuple[Manifest, ...], package: str) -> Manifest:
    return find(manifests, "Deployment", DEPLOYED[package][1])


@pytest.mark.parametrize("where", RENDERED)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates(where: str, version: str) -> None:
    path = k8s_tree() / where
    manifests = render(path)
    assert manifests
    validated = 0
    for manifest in manifests:
        key = (manifest["apiVersion"], manifest["kind"])
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
            validated += 1
        except SchemaNotFoundError:
            assert key in CUSTOM_RESOURCES, f"{name}: no schema for {key} in Kubernetes {version}"
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{path.name}: {name} invalid at {where}: {exc.message}")
    custom = sum((m["apiVersion"], m["kind"]) in CUSTOM_RESOURCES for m in manifests)
    assert validated == len(manifests) - custom


def test_validation_has_teeth() -> None:
    """A typo in a field is rejected by the strict schemas, not ignored."""
    manifest = find(overlay("dev"), "Deployment", "workers")
    spec = manifest["spec"]["template"]["spec"]
    broken = {**manifest, "spec": {**manifest["spec"], "template": {"spec": {**spec}}}}
    broken["spec"]["template"]["spec"]["containers"] = [
        {**spec["containers"][0], "readinesProbe": {"httpGet": {"pth": "/readyz", "port": 1}}}
    ]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_no_textual_templating() -> None:
    """Parameters go through kustomize, never envsubst/sed placeholders. (Prometheus's alert
    templates, ``{{ $labels.x }}`` and ``{{ $value }}``, are Prometheus's, filled per alert.)"""
    placeholder = re.compile(r"\$\{[A-Za-z_]+\}|\{\{(?!\s*\$(labels|value)\b)")
    for path in K8S.rglob("*"):
        if path.is_file():
            assert not placeholder.search(path.read_text()), f"{path} has a placeholder"


def test_a_broken_kustomization_fails(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    assert kustomize_build(tmp_path).returncode != 0


@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("package", sorted(DEPLOYED))
def test_probes_hit_the_real_endpoints_and_ports(name: str, package: str) -> None:
    manifests = overlay(name)
    spec = container(deployment(manifests, package))
    endpoint = ENDPOINTS[package]
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert endpoint.default_port in ports.values()
    env = container_env(manifests, spec)
    assert env[endpoint.port_env] == str(endpoint.default_port)
    assert env[endpoint.host_env] == "0.0.0.0"
    expected = {
        "livenessProbe": HEALTH_PATH,
        "readinessProbe": READY_PATH,
        "startupProbe": HEALTH_PATH,
    }
    for probe, path in expected.items():
        get = spec[probe]["httpGet"]
        assert get["path"] == path, f"{package} {probe}"
        assert ports.get(get["port"], get["port"]) == endpoint.default_port, f"{package} {probe}"
        tls = endpoint.tls_env is not None and endpoint.tls_env in env
        assert get.get("scheme", "HTTP") == ("HTTPS" if tls else "HTTP")
    annotations = deployment(manifests, package)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(endpoint.default_port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_container_has_requests_limits_and_runs_unprivileged(name: str) -> None:
    manifests = overlay(name)
    pods = [m["spec"]["template"] for m in of_kind(manifests, "Deployment")]
    pods += [m["spec"]["template"] for m in of_kind(manifests, "Job")]
    # and the shadow workers, the retrain listener and the init Job
    assert len(pods) == len(DEPLOYED) + 3
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["automountServiceAccountToken"] is False
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{c['name']} {kind}"
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("name", OVERLAYS)
def test_workers_autoscale_up_to_the_partition_count(name: str) -> None:
    manifests = overlay(name)
    partitions = int(
        config_data(manifests, "ConfigMap", _env_from(manifests, "workers", "kafka-settings"))[
            "RS_KAFKA_REQUESTS_PARTITIONS"
        ]
    )
    assert "replicas" not in deployment(manifests, "workers")["spec"], "the autoscaler owns it"
    hpas = list(of_kind(manifests, "HorizontalPodAutoscaler"))
    scaled = list(of_kind(manifests, "ScaledObject"))
    if name == "prod-keda":
        assert not hpas, "KEDA makes its own HPA; a second one would fight it"
        (keda,) = scaled
        assert keda["spec"]["scaleTargetRef"]["name"] == "workers"
        assert 1 <= keda["spec"]["minReplicaCount"] <= keda["spec"]["maxReplicaCount"]
        assert keda["spec"]["maxReplicaCount"] == partitions
        (trigger,) = keda["spec"]["triggers"]
        kafka = config_data(manifests, "ConfigMap", _env_from(manifests, "workers", "kafka"))
        workers = config_data(manifests, "ConfigMap", _env_from(manifests, "workers", "workers"))
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["allowIdleConsumers"] == "false"
        assert trigger["metadata"]["topic"] == kafka["RS_KAFKA_REQUESTS_TOPIC"]
        assert trigger["metadata"]["bootstrapServers"] == kafka["RS_KAFKA_BOOTSTRAP_SERVERS"]
        assert trigger["metadata"]["consumerGroup"] == workers["RS_WORKER_GROUP_ID"]
    else:
        assert not scaled
        (hpa,) = hpas
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "workers",
        }
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] == partitions


def _env_from(manifests: tuple[Manifest, ...], package: str, prefix: str) -> str:
    """The rendered (hashed) name of the ConfigMap a service reads whose name starts so."""
    spec = container(deployment(manifests, package))
    names: list[str] = [s["configMapRef"]["name"] for s in spec["envFrom"] if "configMapRef" in s]
    (name,) = [n for n in names if n.startswith(prefix)]
    return name


@pytest.mark.parametrize("name", OVERLAYS)
def test_disruption_budgets_cover_the_replicated_services(name: str) -> None:
    manifests = overlay(name)
    budgets = {m["metadata"]["name"]: m for m in of_kind(manifests, "PodDisruptionBudget")}
    for package in ("gateway", "workers"):
        labels = deployment(manifests, package)["spec"]["selector"]["matchLabels"]
        assert budgets[DEPLOYED[package][1]]["spec"]["selector"]["matchLabels"] == labels


@pytest.mark.parametrize("name", OVERLAYS)
def test_ingress_serves_the_gateway_over_tls(name: str) -> None:
    manifests = overlay(name)
    ingress = find(manifests, "Ingress", "gateway")
    (tls,) = ingress["spec"]["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert tls["hosts"] == [rule["host"]]
    assert tls["secretName"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = find(manifests, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "gateway"}
    # The UI's origin is allowed to open the WebSocket.
    spec = container(deployment(manifests, "gateway"))
    origins = container_env(manifests, spec)["RS_GATEWAY_ALLOWED_ORIGINS"]
    assert f'"https://{rule["host"]}"' in origins


@pytest.mark.parametrize("name", OVERLAYS)
def test_init_job_creates_topics_then_migrates(name: str) -> None:
    manifests = overlay(name)
    job = find(manifests, "Job", "reviewstream-init")
    spec = job["spec"]["template"]["spec"]
    assert [c["command"] for c in spec["initContainers"]] == [["python", "-m", "deploy.topics"]]
    assert [c["command"] for c in spec["containers"]] == [["python", "-m", "stats.migrate"]]
    stats_image = container(deployment(manifests, "stats"))["image"]
    assert {c["image"] for c in [*spec["initContainers"], *spec["containers"]]} == {stats_image}
    assert container_env(manifests, spec["initContainers"][0]).keys() >= {
        "RS_KAFKA_BOOTSTRAP_SERVERS",
        "RS_KAFKA_REQUESTS_PARTITIONS",
    }
    assert "DATABASE_URL" in container_env(manifests, spec["containers"][0])


def pod_specs(manifests: tuple[Manifest, ...]) -> list[Manifest]:
    """The pod spec of every Deployment, Job and CronJob."""
    workloads = [*of_kind(manifests, "Deployment"), *of_kind(manifests, "Job")]
    specs = [w["spec"]["template"]["spec"] for w in workloads]
    specs += [
        c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in of_kind(manifests, "CronJob")
    ]
    return specs


def test_dev_secret_has_every_key_the_pods_need() -> None:
    manifests = overlay("dev")
    (secret,) = of_kind(manifests, "Secret")
    keys = set(secret["data"])
    needed: set[str] = set()
    for spec in pod_specs(manifests):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                # A Kafka principal's password is in the Secret Strimzi makes for its KafkaUser.
                if ref and not ref.get("optional", False) and ref["name"] not in PRINCIPALS:
                    assert ref["name"] == secret["metadata"]["name"]
                    needed.add(ref["key"])
        for volume in spec.get("volumes", []):
            if "secret" in volume and volume["secret"]["secretName"].startswith("reviewstream"):
                needed |= {item["key"] for item in volume["secret"].get("items", [])}
    assert needed == {
        "DATABASE_URL",
        "DATABASE_URL_WRITER",
        "DATABASE_URL_READER",
        "api-keys.json",
        "models-signing.pem",
        "models-signing.pub",
    }
    assert needed <= keys
    for key, user in [("DATABASE_URL", "reviewstream"), ("DATABASE_URL_WRITER", WRITER.name),
                      ("DATABASE_URL_READER", READER.name)]:  # fmt: skip
        url = urlsplit(base64.b64decode(secret["data"][key]).decode())
        assert (url.scheme, url.username) == ("postgresql", user), key


@pytest.mark.parametrize(
    ("workload", "key"),
    [
        (("Job", "reviewstream-init"), "DATABASE_URL"),
        (("Deployment", "stats"), "DATABASE_URL_WRITER"),
        (("Deployment", "gateway"), "DATABASE_URL_READER"),
        (("Deployment", "retrain-listener"), "DATABASE_URL_READER"),
        (("CronJob", "retrain"), "DATABASE_URL_READER"),
    ],
)
def test_each_workload_connects_as_its_own_role(workload: tuple[str, str], key: str) -> None:
    """Only the init Job migrates as the owner; stats writes, the others read."""
    manifest = find(overlay("dev"), *workload)
    spec = manifest["spec"]
    if workload[0] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    env = container_env(overlay("dev"), spec["template"]["spec"]["containers"][0])
    assert env["DATABASE_URL"]["secretKeyRef"]["key"] == key


def test_cloudnativepg_manages_the_roles_with_secrets_made_out_of_band() -> None:
    cluster = find(render(k8s_tree() / "external"), "Cluster", "reviewstream-db")
    managed = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    assert set(managed) == {WRITER.name, READER.name}
    for role in managed.values():
        assert role["login"] is True
        assert role["passwordSecret"]["name"].startswith("reviewstream-db-")
    assert cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"] == "reviewstream-db-owner"
    assert not list(of_kind(render(k8s_tree() / "external"), "Secret"))


def test_cloudnativepg_has_room_for_the_stats_locks_as_every_postgresql_of_ours() -> None:
    """A stats transaction holds a lock per request of its batch (tests/stats/test_store.py
    holds eight full batches' at once against the local stack's PostgreSQL)."""
    cluster = find(render(k8s_tree() / "external"), "Cluster", "reviewstream-db")
    parameters = cluster["spec"]["postgresql"]["parameters"]
    assert parameters["max_locks_per_transaction"] == str(MAX_LOCKS_PER_TRANSACTION)
    initdb = (DEPLOY / "compose/postgres/initdb/20-stats-locks.sql").read_text()
    assert f"max_locks_per_transaction = {MAX_LOCKS_PER_TRANSACTION};" in initdb


def test_prod_pins_images_and_keeps_secrets_out_of_git() -> None:
    manifests = overlay("prod")
    assert not list(of_kind(manifests, "Secret")), "prod's Secret is created out of band"
    for spec in pod_specs(manifests):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            image: str = c["image"]
            assert image.startswith("registry.example.com/reviewstream/"), image
            tag = image.rsplit(":", 1)[-1]
            assert "@sha256:" in image or re.fullmatch(r"\d+\.\d+\.\d+", tag), image


@pytest.mark.parametrize("name", [name for name in OVERLAYS if name.startswith("prod")])
def test_prod_stores_statistics_with_two_processors_each_with_a_feedback_partition(
    name: str,
) -> None:
    """One processor does not keep up with the workers' rate (README, *Statistics*); one past
    the feedback topic's partitions would be given none of them."""
    manifests = overlay(name)
    kafka = config_data(manifests, "ConfigMap", _env_from(manifests, "stats", "kafka-settings"))
    stats = find(manifests, "Deployment", "stats")
    assert 2 <= stats["spec"]["replicas"] <= int(kafka["RS_KAFKA_FEEDBACK_PARTITIONS"])


@pytest.mark.parametrize("name", OVERLAYS)
def test_kafka_settings_parse_with_the_real_settings_class(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = overlay(name)
    data = config_data(manifests, "ConfigMap", _env_from(manifests, "workers", "kafka-settings"))
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    # Each workload's own principal and password (base/kafka/auth-*.yaml), not shared.
    monkeypatch.setenv("RS_KAFKA_USERNAME", "worker")
    monkeypatch.setenv("RS_KAFKA_PASSWORD", "from-the-secret")
    settings = KafkaSettings()
    per_workload = {"RS_KAFKA_USERNAME", "RS_KAFKA_PASSWORD"}
    assert {f"RS_KAFKA_{f.upper()}" for f in KafkaSettings.model_fields} == set(data) | per_workload
    assert settings.requests_partitions == int(data["RS_KAFKA_REQUESTS_PARTITIONS"])


def test_every_rendered_object_is_labelled_part_of_reviewstream() -> None:
    for name in OVERLAYS:
        for manifest in overlay(name):
            labels = manifest["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/part-of") == "reviewstream", manifest["kind"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_retrain_cronjob_runs_retrain_with_the_training_image(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scheduled, never two at once, gate failures not retried, unprivileged, and every
    setting it is given is one that training reads (parsed by the real settings classes)."""
    manifests = overlay(name)
    cron = find(manifests, "CronJob", "retrain")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    (rule,) = job["podFailurePolicy"]["rules"]
    assert (rule["action"], rule["onExitCodes"]["values"]) == ("FailJob", [GATES_FAILED])
    spec = job["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    assert c["command"][:4] == ["python", "-m", "training", "retrain"]
    assert "--on-alerts" in c["command"]
    assert "/training:" in c["image"] or c["image"].startswith("reviewstream/training")
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    env = container_env(manifests, c)
    assert {"MLFLOW_TRACKING_URI", "RS_KAFKA_ALERTS_TOPIC", "DATABASE_URL"} <= set(env)
    trained = {k: v for k, v in env.items() if k.startswith(("RS_TRAIN_", "RS_EXPORT_"))}
    for key, value in trained.items():
        monkeypatch.setenv(key, value)
    read = {*names(Settings), *names(RetrainSettings), *names(ExportSettings)}
    assert set(trained) <= read, set(trained) - read
    assert RetrainSettings().feedback_sources == ("rest", "ws")
    assert Settings().train_path == Path("/data/train.csv.gz")
    assert "/data" in {m["mountPath"] for m in c["volumeMounts"]}
    assert any("emptyDir" in v for v in spec["volumes"]), "somewhere to write, off the image"


@pytest.mark.parametrize("name", OVERLAYS)
def test_one_retrain_listener_follows_the_alerts_with_the_cronjobs_settings(name: str) -> None:
    """``retrain --follow`` in the training image, one pod at a time, given what the CronJob is
    given (its child is the same ``retrain --on-alerts``), with limits that fit a training."""
    manifests = overlay(name)
    listener = find(manifests, "Deployment", "retrain-listener")
    assert listener["spec"]["replicas"] == 1
    assert listener["spec"]["strategy"]["type"] == "Recreate"
    (c,) = listener["spec"]["template"]["spec"]["containers"]
    assert c["command"][:5] == ["python", "-m", "training", "retrain", "--follow"]
    cron = find(manifests, "CronJob", "retrain")
    (scheduled,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["image"] == scheduled["image"]
    assert container_env(manifests, c) == container_env(manifests, scheduled)
    assert c["resources"]["limits"] == scheduled["resources"]["limits"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {
        m["mountPath"] for m in scheduled["volumeMounts"]
    }


def names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{field}".upper() for field in settings.model_fields}


@pytest.mark.parametrize(
    ("kind", "name", "user"),
    [
        ("Deployment", "workers", "worker"),
        ("Deployment", "shadow-workers", "worker"),
        ("Deployment", "registry-watcher", "watcher"),
        ("Deployment", "retrain-listener", "trainer"),
        ("CronJob", "retrain", "trainer"),
    ],
)
def test_mlflow_clients_sign_in_with_their_own_key_of_the_credentials_secret(
    kind: str, name: str, user: str
) -> None:
    manifest = find(overlay("prod"), kind, name)
    if kind == "CronJob":
        manifest = manifest["spec"]["jobTemplate"]
    spec = manifest["spec"]["template"]["spec"]
    (client,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in client["env"]}
    assert env["MLFLOW_TRACKING_USERNAME"] == user
    assert "MLFLOW_TRACKING_PASSWORD" not in env
    mount = next(m for m in client["volumeMounts"] if m["name"] == "mlflow-password")
    assert env["MLFLOW_TRACKING_PASSWORD_FILE"] == f"{mount['mountPath']}/password"
    volume = next(v for v in spec["volumes"] if v["name"] == "mlflow-password")
    # Only its own key: a leaked pod holds one user's password, not every one.
    assert volume["secret"] == {
        "secretName": "mlflow-credentials",
        "defaultMode": 0o440,
        "items": [{"key": user, "path": "password"}],
    }


def test_mlflow_server_requires_sign_in_with_users_provisioned_from_a_secret() -> None:
    pod = find(render(K8S / "external"), "Deployment", "mlflow")["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["command"][:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    env = {e["name"]: e for e in server["env"]}
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
        "mlflow-users"
    )
    (users,) = pod["initContainers"]
    assert users["command"][:4] == ["python", "-m", "deploy.mlflow_access", "provision"]
    config = users["command"][users["command"].index("--config") + 1]
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == config
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["users"]["secret"]["secretName"] == "mlflow-users"
    assert "password1234" not in str(pod)


def test_mlflow_posts_alias_moves_to_the_watcher_from_a_job_run_as_its_admin() -> None:
    external = render(K8S / "external")
    server = find(external, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in server["env"]}
    key = env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]["valueFrom"]["secretKeyRef"]
    assert key == {"name": "mlflow-users", "key": "webhook_encryption_key"}
    pod = find(external, "Job", "mlflow-webhook")["spec"]["template"]["spec"]
    (job,) = pod["containers"]
    assert job["command"][:3] == ["python", "-m", "deploy.mlflow_webhook"]
    assert "http://registry-watcher.reviewstream.svc:9103/webhooks/mlflow" in job["command"]
    assert {e["name"]: e.get("value") for e in job["env"]}["MLFLOW_TRACKING_USERNAME"] == "admin"
    (users,) = [v for v in pod["volumes"] if v["name"] == "users"]
    assert {i["key"] for i in users["secret"]["items"]} == {"admin", "webhook_secret"}
    watcher = find(overlay("prod"), "Deployment", "registry-watcher")["spec"]["template"]["spec"]
    (shared,) = [v for v in watcher["volumes"] if v["name"] == "mlflow-webhook"]
    assert shared["secret"]["items"] == [{"key": "webhook_secret", "path": "secret"}]
