"""What ``make kube-smoke`` plays under podman (deploy/podman/kube_*), checked offline on the
rendered dev overlay: the smoke test itself runs it for real (``make containers-smoke``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography import x509

from deploy.podman import kube_manifests, kube_plan
from deploy.podman.kube_manifests import Manifest, name_of
from deploy.podman.kube_smoke import INITDB, K8S, TARGETS
from tests.deployrender import overlay

PREFIX = "rs-kube-test-"
REGISTRY, TAG = "localhost/reviewstream", "0.1.0"
# What the README says only the offline checks cover (deploy/k8s/README.md).
SET_ASIDE = {"Namespace", "Service", "Ingress", "HorizontalPodAutoscaler",
             "PodDisruptionBudget", "CronJob", "KafkaUser"}  # fmt: skip


@cache
def planned() -> kube_plan.Plan:
    image_of = kube_manifests.image_mapper(REGISTRY, TAG, TARGETS)
    images = {"kafka": f"{REGISTRY}/kafka:4.1.1", "postgres": f"{REGISTRY}/postgres:15-bookworm"}
    return kube_plan.plan(list(overlay("dev")), PREFIX, image_of, images,
                          K8S / "external" / "mlflow.yaml", INITDB)  # fmt: skip


def pod_specs(objects: list[Manifest]) -> list[Manifest]:
    return [m["spec"]["template"]["spec"] if m["kind"] == "Deployment" else m["spec"]
            for m in objects if m["kind"] in ("Deployment", "Pod")]  # fmt: skip


def secrets_read(spec: Manifest) -> set[str]:
    names = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                  if "secretKeyRef" in (e.get("valueFrom") or {})}  # fmt: skip
    return names


def test_podman_plays_every_workload_and_sets_aside_what_the_readme_names() -> None:
    p = planned()
    assert {m["kind"] for m in p.aside} == SET_ASIDE
    readme = (K8S / "README.md").read_text()
    for kind in SET_ASIDE - {"Namespace", "KafkaUser"}:
        assert kind in readme, f"deploy/k8s/README.md does not say {kind} is not played"
    rendered = {name_of(m) for m in overlay("dev") if m["kind"] in ("Deployment", "Job")}
    assert {name_of(m).removeprefix(PREFIX) for m in p.app if m["kind"] != "ConfigMap"} == rendered
    # The init Job runs as a Pod of its template: its init container, then the migration.
    init = next(m for m in p.app if m["kind"] == "Pod")
    assert [c["name"] for c in init["spec"]["initContainers"]] == ["topics"]
    assert init["spec"]["restartPolicy"] == "OnFailure"


def test_every_image_is_one_make_images_builds() -> None:
    p = planned()
    for spec in pod_specs([*p.app, *p.mlflow]):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c["image"].removeprefix(f"{REGISTRY}/").split(":")[0] in TARGETS
            assert c["image"].endswith(f":{TAG}")


def test_every_secret_a_pod_reads_is_made_first_under_the_runs_prefix() -> None:
    p = planned()
    made = set(p.env_secrets) | set(p.volume_secrets)
    assert all(name.startswith(PREFIX) for name in made)
    for spec in pod_specs([*p.app, *p.mlflow, *p.kafka, *p.postgres]):
        assert secrets_read(spec) <= made
        for volume in spec.get("volumes", []):
            if "secret" in volume:  # podman 4.3.1 crashes on a secret volume without optional
                assert volume["secret"]["optional"] is False
                assert "items" not in volume["secret"]
                assert volume["secret"]["secretName"] in p.volume_secrets


def test_each_pod_has_emptydirs_of_its_own() -> None:
    """podman 4.3.1 names an emptyDir's volume after the pod's volume name: every pod with an
    emptyDir ``tmp`` would share one."""
    p = planned()
    names = [v["name"] for spec in pod_specs(p.app) for v in spec.get("volumes", [])
             if "emptyDir" in v]  # fmt: skip
    assert len(names) == len(set(names))
    assert all(name.startswith(PREFIX) for name in names)
    for spec in pod_specs(p.app):
        declared = {v["name"] for v in spec.get("volumes", [])}
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert {m["name"] for m in c.get("volumeMounts", [])} <= declared


def test_variables_in_commands_are_expanded_as_the_kubelet_does() -> None:
    """podman 4.3.1 passes ``$(VAR)`` on as written: MLflow's init container needs the store."""
    p = planned()
    users = p.mlflow[0]["spec"]["template"]["spec"]["initContainers"][0]
    assert "$(MLFLOW_BACKEND_STORE_URI)" not in users["command"]
    assert users["command"][-1].endswith(f"@{p.hosts.postgres}:5432/mlflow")


def test_a_pod_with_init_containers_does_not_restart_them_once_done() -> None:
    """podman 4.3.1 gives init containers the pod's restart policy: under Always one that
    finished starts again forever and the server never starts."""
    p = planned()
    mlflow = p.mlflow[0]["spec"]["template"]["spec"]
    assert mlflow["initContainers"]
    assert mlflow["restartPolicy"] == "OnFailure"


def test_a_secret_volume_with_items_reads_only_those_items_under_their_paths() -> None:
    """podman 4.3 mounts every key of a Secret and ignores ``items``: the watcher would see
    every MLflow password, and none under the path its settings name."""
    p = planned()
    watcher = next(m for m in p.app if name_of(m) == f"{PREFIX}registry-watcher")
    volumes = {v["name"]: v for v in watcher["spec"]["template"]["spec"]["volumes"]}
    password = p.volume_secrets[volumes["mlflow-password"]["secret"]["secretName"]]
    assert password == {"password": p.passwords.mlflow["watcher"]}
    webhook = p.volume_secrets[volumes["mlflow-webhook"]["secret"]["secretName"]]
    assert webhook == {"secret": p.passwords.mlflow["webhook_secret"]}


def test_the_stand_ins_answer_under_the_overlays_host_names_with_its_passwords() -> None:
    p = planned()
    assert (p.hosts.kafka, p.hosts.postgres, p.hosts.mlflow) == (
        "reviewstream-kafka-bootstrap.kafka.svc", "reviewstream-db-rw.databases.svc",
        "mlflow.mlflow.svc",
    )  # fmt: skip
    secrets = {name.removeprefix(PREFIX).rsplit("-", 1)[0]: files
               for name, files in p.volume_secrets.items()}  # fmt: skip
    ca = x509.load_pem_x509_certificate(secrets["kafka-cluster-ca-cert"]["ca.crt"].encode())
    broker = x509.load_pem_x509_certificates(secrets["kafka-tls"]["broker.pem"].encode())[0]
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [p.hosts.kafka]
    env: dict[str, Any] = {
        e["name"]: e.get("value") for e in p.kafka[0]["spec"]["containers"][0]["env"]
    }
    assert f"TLS://{p.hosts.kafka}:9093" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert p.env_secrets[f"{PREFIX}mlflow-store"]["MLFLOW_BACKEND_STORE_URI"].endswith(
        f"@{p.hosts.postgres}:5432/mlflow"
    )


def test_no_port_is_published_on_the_host_yet_named_probe_ports_resolve() -> None:
    """podman 4.3.1 publishes every containerPort on the host's same port: workers and
    shadow-workers (both 9101) could not both start."""
    p = planned()
    for spec in pod_specs([*p.app, *p.mlflow, *p.kafka, *p.postgres]):
        assert all("ports" not in c for c in spec["containers"])
    assert p.ports[f"{PREFIX}shadow-workers/worker"] == [
        {"name": "http", "containerPort": 9101, "protocol": "TCP"}
    ]


def test_a_containers_own_env_wins_over_its_config_maps_as_in_kubernetes() -> None:
    """podman 4.3.1 applies envFrom after env: the ConfigMaps are folded into env under the
    container's own entries, so the shadow worker keeps its role, group and alias."""
    p = planned()
    for played in p.app:
        if played["kind"] != "Deployment":
            continue
        for c in played["spec"]["template"]["spec"]["containers"]:
            assert "envFrom" not in c
            names = [e["name"] for e in c.get("env", [])]
            assert len(names) == len(set(names)), f"{name_of(played)} sets a variable twice"
    shadow = next(m for m in p.app if name_of(m) == f"{PREFIX}shadow-workers")
    env = {
        e["name"]: e.get("value")
        for e in shadow["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["RS_WORKER_ROLE"] == "shadow"
    assert env["RS_KAFKA_BOOTSTRAP_SERVERS"]  # from the shared kafka-settings ConfigMap
