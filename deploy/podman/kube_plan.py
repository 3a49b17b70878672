"""What one run of the kube smoke test makes, in order: the podman secrets first (podman reads
them as it creates a pod), then Kafka, PostgreSQL and MLflow, then the dev overlay."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.podman import kube_standins as standins
from deploy.podman.kube_manifests import ForPodman, Manifest, name_of, set_aside


@dataclass(frozen=True)
class Plan:
    hosts: standins.Hosts
    passwords: standins.Passwords
    env_secrets: dict[str, dict[str, str]]  # podman secret -> key -> value
    volume_secrets: dict[str, dict[str, str]]  # podman secret -> file -> content
    ports: dict[str, list[Manifest]]  # "<pod manifest>/<container>" -> its ports (not played)
    kafka: list[Manifest]
    postgres: list[Manifest]
    mlflow: list[Manifest]
    app: list[Manifest]  # the overlay's Deployments and ConfigMaps, and the Job's pod
    aside: list[Manifest]  # the overlay's kinds podman does not play


def plan(
    overlay: list[Manifest],
    prefix: str,
    image_of: Callable[[str], str],
    images: dict[str, str],
    mlflow_yaml: Path,
    initdb: Path,
) -> Plan:
    """``images``: the Kafka and PostgreSQL stand-ins' (keys ``kafka``, ``postgres``)."""
    app_secret = next(m for m in overlay if m["kind"] == "Secret")
    hosts = standins.Hosts.of(overlay, app_secret)
    passwords = standins.Passwords.make(app_secret)
    ca, key_store = standins.certificates(hosts.kafka)
    kafka = standins.kafka(hosts, images["kafka"], key_store)
    postgres = standins.postgres(passwords, images["postgres"], initdb)
    operator = standins.operator_secrets(hosts, passwords, ca)
    secrets = [m for m in [*overlay, *operator, *kafka, *postgres] if m["kind"] == "Secret"]
    rewrite = ForPodman(prefix, image_of, {name_of(m): m for m in secrets})
    aside = set_aside(overlay)

    def played(objects: list[Manifest]) -> list[Manifest]:
        return rewrite.rewrite(m for m in objects if m["kind"] != "Secret" and m not in aside)

    kafka, postgres = played(kafka), played(postgres)
    mlflow, app = played(standins.mlflow(mlflow_yaml)), played(overlay)
    return Plan(
        hosts=hosts,
        passwords=passwords,
        env_secrets=rewrite.env_secrets,
        volume_secrets=rewrite.volume_secrets,
        ports=rewrite.ports,
        kafka=kafka,
        postgres=postgres,
        mlflow=mlflow,
        app=app,
        aside=aside,
    )
