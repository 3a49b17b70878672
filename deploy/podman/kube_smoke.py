"""The Kubernetes smoke test (``make kube-smoke``, run by ``make containers-smoke``): the dev
overlay rendered by kustomize and played by ``podman kube play`` from the images of ``make
images``, against real Kafka, PostgreSQL and MLflow pods. Steps, each printed with its time:

1. ``kustomize build`` of the dev overlay (fresh secrets of its own); the kinds podman plays
   and those it sets aside (``deploy.podman.kube_manifests``);
2. Kafka, PostgreSQL and MLflow as pods on the run's network, under the host names the
   overlay's settings use (``deploy.podman.kube_standins``), each ready;
3. the operators' part: Kafka's SCRAM users and ACLs (Strimzi), the login roles
   (CloudNativePG);
4. a model trained and promoted by the training image, and made the challenger too (the
   dev overlay runs a shadow worker, ready only with a challenger loaded);
5. the overlay played (its Deployments, ConfigMaps and Secret, and the init Job's pod
   template as a Pod); the init pod completes;
6. every container running and passing its probes, run as the kubelet runs them
   (``deploy.podman.kubelet``: podman 4.3 ignores readiness probes);
7. a review classified through the gateway pod, over REST with the overlay's admin key;

then everything removed: ``podman kube down`` of each file, the secrets, the volumes and the
network. A failure names each container that is not ready, shows its last log lines and its
probes' last results, and exits 1. Every name podman makes carries this run's prefix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import typer
import yaml
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from deploy.podman import kube_manifests as manifests
from deploy.podman import kube_plan
from deploy.podman import kube_standins as standins
from deploy.podman.kubelet import Container, containers_of, pod_address, wait_ready
from deploy.podman.report import (
    DataDir,
    KafkaImage,
    PostgresImage,
    Registry,
    SmokeFailed,
    Steps,
    Tag,
    podman,
    show_logs,
)
from deploy.podman.smoke import MODEL, TRAIN_ENV, model_version

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZE = ROOT / ".tools" / "bin" / "kustomize"
INITDB = ROOT / "deploy" / "compose" / "postgres" / "initdb"
TARGETS = ("worker", "registry-watcher", "gateway", "stats", "mlflow", "training")
COMMAND_TIMEOUT_S = 900
READY_TIMEOUT_S = 600

app = typer.Typer(add_completion=False)


def run(*command: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """A command's output; its failure (or a hang) fails the step with its last lines."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SmokeFailed(f"{' '.join(command[:4])} ... still running after {timeout} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise SmokeFailed(f"{' '.join(command[:4])} ... exited {done.returncode}:\n{tail}")
    return done.stdout


class KubeRun:
    """What this run played on its own network, and how to take it all away again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.prefix = f"rs-kube-{uuid.uuid4().hex[:6]}-"
        self.network = f"{self.prefix}net"
        self.played: list[Path] = []
        self.secrets: set[str] = set()
        self.containers: list[Container] = []
        self.ports: dict[str, list[manifests.Manifest]] = {}

    def create_network(self) -> None:
        run("podman", "network", "create", self.network)

    def create_secrets(self, plan: kube_plan.Plan) -> None:
        made = [(n, manifests.env_secret_json(v)) for n, v in plan.env_secrets.items()]
        made += [(n, manifests.volume_secret_json(v)) for n, v in plan.volume_secrets.items()]
        for name, payload in made:
            path = self.folder / "secret.json"
            path.write_text(payload)
            self.secrets.add(name)
            run("podman", "secret", "create", name, str(path))
            path.unlink()

    def play(self, name: str, objects: list[manifests.Manifest], alias: str | None = None) -> None:
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        self.played.append(path)
        self.containers += containers_of(objects, self.ports)
        network = self.network + (f":alias={alias}" if alias else "")
        run("podman", "kube", "play", "--network", network, str(path))

    def wait_ready(self, objects: list[manifests.Manifest]) -> None:
        names = {c.name for c in containers_of(objects, self.ports)}
        wait_ready([c for c in self.containers if c.name in names], self.network, READY_TIMEOUT_S)

    def report_failure(self, reason: str) -> None:
        """Each container not ready: its state, last log lines and probes' last results."""
        print(f"\nFAILED: {reason}\n", flush=True)
        unwell = [c for c in self.containers if c.ready_after is None]
        for c in unwell or self.containers:
            show_logs(c.name, f"{c.name} (pod {c.pod}): {c.last.get('state', 'not checked')}")
            for probe, result in c.last.items():
                if probe != "state":
                    print(f"    {probe}: {result}", flush=True)

    def close(self) -> None:
        for path in reversed(self.played):
            subprocess.run(["podman", "kube", "down", str(path)], capture_output=True)
        leftovers = podman("ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^{self.prefix}")
        for name in leftovers.split():
            subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        # Every volume of the run carries its prefix (emptyDirs, secrets', claims').
        volumes = podman("volume", "ls", "--format", "{{.Name}}", "--filter", f"name={self.prefix}")
        for name in volumes.split():
            subprocess.run(["podman", "volume", "rm", "-f", name], capture_output=True)
        for name in self.secrets:
            subprocess.run(["podman", "secret", "rm", name], capture_output=True)
        subprocess.run(["podman", "network", "rm", "-f", self.network], capture_output=True)


ACLS = (
    "import asyncio; from contracts.kafka_access import access; from contracts.topics import "
    "KafkaSettings; from deploy.acl import create_acls; k = KafkaSettings(); "
    "print(asyncio.run(create_acls(k, access(k))), 'ACLs')"
)


def env_flags(env: dict[str, str]) -> list[str]:
    return [f"--env={k}={v}" for k, v in env.items()]


def smoke(kube: KubeRun, steps: Steps, images: dict[str, str], data_dir: Path) -> None:
    image_of = manifests.image_mapper(images["registry"], images["tag"], TARGETS)
    with steps.step("kustomize build of the dev overlay; what podman plays, what it cannot"):
        overlay, api_key = manifests.render_dev_overlay(KUSTOMIZE, K8S, kube.folder)
        for kind in sorted({m["kind"] for m in overlay}):
            names = ", ".join(manifests.name_of(m) for m in overlay if m["kind"] == kind)
            if kind in manifests.PLAYED:
                print(f"    {kind}, played: {names}")
            elif kind in manifests.MADE:
                print(f"    {kind}, made as podman secrets (see kube_manifests): {names}")
            elif kind in manifests.AS_POD:
                print(f"    {kind}, its pod template played as a Pod: {names}")
            else:
                print(f"    {kind}, not played (offline checks only): {names}")
        p = kube_plan.plan(overlay, kube.prefix, image_of, images,
                           K8S / "external" / "mlflow.yaml", INITDB)  # fmt: skip
        hosts, passwords = p.hosts, p.passwords
        kube.ports = p.ports

    with steps.step(f"Kafka, PostgreSQL, MLflow on the network as {hosts.kafka}, "
                    f"{hosts.postgres}, {hosts.mlflow}: ready"):  # fmt: skip
        kube.create_network()
        kube.create_secrets(p)
        kube.play("kafka", p.kafka, alias=hosts.kafka)
        kube.play("postgres", p.postgres, alias=hosts.postgres)
        kube.wait_ready(p.postgres)
        kube.play("mlflow", p.mlflow, alias=hosts.mlflow)
        kube.wait_ready(p.kafka + p.mlflow)

    with steps.step("the operators' part: SCRAM users and ACLs (Strimzi), roles (CloudNativePG)"):
        kafka_pod = manifests.name_of(p.kafka[0])
        for principal, password in sorted(passwords.kafka.items()):
            run("podman", "exec", f"{kafka_pod}-kafka", "java", "-Xmx128m", "-cp",
                "/opt/kafka/libs/*",
                "-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties",
                "kafka.admin.ConfigCommand", "--bootstrap-server",
                f"127.0.0.1:{standins.KAFKA_ADMIN_PORT}", "--alter", "--entity-type", "users",
                "--entity-name", principal, "--add-config",
                f"SCRAM-SHA-512=[password={password}]")  # fmt: skip
        topics = {k: v for k, v in manifests.config_data(overlay, "kafka-settings").items()
                  if k.endswith("_TOPIC")}  # fmt: skip
        print("    " + run(
            "podman", "run", "--rm", "--pod", kafka_pod, "--read-only",
            *env_flags(topics | {"RS_KAFKA_BOOTSTRAP_SERVERS":
                                 f"127.0.0.1:{standins.KAFKA_ADMIN_PORT}"}),
            images["stats"], "python", "-c", ACLS,
        ).strip(), flush=True)  # fmt: skip
        run("podman", "run", "--rm", "--network", kube.network, "--read-only",
            *env_flags({"DATABASE_URL": passwords.owner_url,
                        "RS_DB_WRITER_PASSWORD": passwords.writer,
                        "RS_DB_READER_PASSWORD": passwords.reader}),
            images["stats"], "python", "-m", "stats.roles")  # fmt: skip

    mlflow_env = {
        "MLFLOW_TRACKING_URI": hosts.mlflow_uri,
        "MLFLOW_TRACKING_PASSWORD_FILE": "",
    }
    with steps.step("train and promote a model in the training image; it is the challenger too"):
        trained = run(
            "podman", "run", "--rm", "--name", f"{kube.prefix}training", "--network",
            kube.network, "-v", f"{data_dir}:/app/shared/data:ro",
            *env_flags(TRAIN_ENV | mlflow_env | {
                "MLFLOW_TRACKING_USERNAME": "trainer",
                "MLFLOW_TRACKING_PASSWORD": passwords.mlflow["trainer"]}),
            images["training"], "python", "-m", "training", "train", "--family", "fast",
            "--no-progress",
        )  # fmt: skip
        version = model_version(trained, promoted=True)
        print(run(
            "podman", "run", "--rm", "--name", f"{kube.prefix}shadow", "--network",
            kube.network,
            *env_flags(mlflow_env | {"MLFLOW_TRACKING_USERNAME": "release",
                                     "MLFLOW_TRACKING_PASSWORD": passwords.mlflow["release"]}),
            images["training"], "python", "-m", "export", "shadow", version,
            "--reason", "kube smoke test", "--by", "kube-smoke",
        ).strip(), flush=True)  # fmt: skip
        print(f"    {MODEL} v{version}: production and challenger", flush=True)

    with steps.step("the dev overlay played; the init Job's pod done; every container ready"):
        # The training data's PersistentVolumeClaim, made out of band on a cluster: a volume
        # bound to the shared data's files.
        claim = f"{kube.prefix}reviewstream-training-data"
        run("podman", "volume", "create", "--opt", "type=none", "--opt", "o=bind",
            "--opt", f"device={data_dir / 'yelp'}", claim)  # fmt: skip
        kube.play("overlay", p.app)
        kube.wait_ready(p.app)

    with steps.step("a review classified through the gateway pod (REST, the overlay's admin key)"):
        gateway = next(c for c in kube.containers if c.spec["name"] == "gateway")
        port = next(p["containerPort"] for p in gateway.ports if p["name"] == "http")
        url = f"http://{pod_address(gateway.pod, kube.network)}:{port}/v1/classify"
        # The gateway answers 503 until the watcher's announcement of the model reaches it.
        for attempt in Retrying(stop=stop_after_delay(180), wait=wait_fixed(2), reraise=True,
                                retry=retry_if_exception_type(SmokeFailed)):  # fmt: skip
            with attempt:
                response = httpx.post(
                    url, json={"text": "The staff were lovely and the food was great."},
                    headers={"X-API-Key": api_key}, timeout=30,
                )  # fmt: skip
                if response.status_code != 200:
                    raise SmokeFailed(
                        f"POST /v1/classify: {response.status_code} {response.text[:300]}"
                    )
        answer = response.json()
        print(f"    {answer['verdict']} ({answer['probability']:.2f}) by v{answer['model_version']}"
              f" on {answer['worker_id']}", flush=True)  # fmt: skip


@app.command()
def main(
    registry: Registry,
    tag: Tag,
    kafka_image: KafkaImage,
    postgres_image: PostgresImage,
    data_dir: DataDir,
) -> None:
    """Play the dev overlay under podman from the built images and check every pod is ready."""
    images = {t: f"{registry}/{t}:{tag}" for t in TARGETS}
    images |= {"registry": registry, "tag": tag, "kafka": kafka_image, "postgres": postgres_image}
    steps = Steps()
    with tempfile.TemporaryDirectory(prefix="rs-kube.") as folder:
        kube = KubeRun(Path(folder))
        try:
            smoke(kube, steps, images, data_dir.resolve())
        except (SmokeFailed, subprocess.CalledProcessError, httpx.HTTPError, OSError) as exc:
            kube.report_failure(str(exc))
            raise typer.Exit(1) from None
        finally:
            with steps.step("podman kube down: pods, secrets, volumes and the network removed"):
                kube.close()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    steps.summary(f"kube smoke test passed (load average now {load})")


if __name__ == "__main__":
    sys.exit(app())
