"""Render the deployment files with the real tools, offline, for the deploy tests.

``docker compose config`` normalises the compose file (anchors, merges, interpolation of the
defaults); ``kustomize build`` renders each overlay. Both tools are pinned and built into
``.tools/`` by ``make tools`` (part of ``make test``); a missing tool fails the test with that
instruction rather than skipping it, so a check can never pass by not running.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import dev_secrets

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod", "prod-keda")
KUSTOMIZE = ROOT / ".tools" / "bin" / "kustomize"
DOCKER_CONFIG = ROOT / ".tools" / "docker"
COMPOSE_PLUGIN = DOCKER_CONFIG / "cli-plugins" / "docker-compose"

Manifest = dict[str, Any]

# package -> (compose service, Kubernetes Deployment): the four deployable services.
DEPLOYED = {
    "workers": ("workers", "workers"),
    "registry_watcher": ("registry-watcher", "registry-watcher"),
    "stats": ("stats", "stats"),
    "gateway": ("gateway", "gateway"),
}


def _require(tool: Path) -> None:
    if not tool.exists():
        pytest.fail(f"{tool.relative_to(ROOT)} is missing: run `make tools`", pytrace=False)


# What compose requires and `make compose-secrets` writes into deploy/compose/.env: test values
# here (a developer's own .env is never read by the tests).
COMPOSE_SECRETS = {
    "RS_POSTGRES_PASSWORD": "test-owner-password",
    "RS_DB_WRITER_PASSWORD": "test-writer-password",
    "RS_DB_READER_PASSWORD": "test-reader-password",
    "RS_COMPOSE_API_KEYS_FILE": "./secrets/api-keys.json",
}


def _clean_env() -> dict[str, str]:
    """The caller's RS_* variables must not leak into what the files say on their own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RS_", "COMPOSE_"))}
    env["DOCKER_CONFIG"] = str(DOCKER_CONFIG)
    return env


def run_compose(
    *args: str, file: Path = COMPOSE_FILE, secrets: dict[str, str] = COMPOSE_SECRETS
) -> subprocess.CompletedProcess[str]:
    _require(COMPOSE_PLUGIN)
    return subprocess.run(
        ["docker", "compose", "--env-file", os.devnull, "-f", str(file), *args],
        capture_output=True,
        text=True,
        env=_clean_env() | secrets,
        timeout=120,
        check=False,
    )


@cache
def compose_config(*profiles: str) -> dict[str, Any]:
    """``docker compose config`` as JSON; fails the test with compose's own message."""
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    result = run_compose(*flags, "config", "--format", "json")
    if result.returncode != 0:
        pytest.fail(f"docker compose config rejected the file:\n{result.stderr}", pytrace=False)
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def kustomize_build(path: Path) -> subprocess.CompletedProcess[str]:
    _require(KUSTOMIZE)
    return subprocess.run(
        [str(KUSTOMIZE), "build", str(path)],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
        check=False,
    )


@cache
def k8s_tree() -> Path:
    """A copy of deploy/k8s with the dev overlay's git-ignored secrets files generated as
    `make k8s-dev-secrets` does (a developer's own are left out of the copy)."""
    tree = Path(tempfile.mkdtemp(prefix="rs-k8s-")) / "k8s"
    atexit.register(shutil.rmtree, tree.parent, True)
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets"))
    dev_secrets.k8s_dev(tree / "overlays" / "dev")
    return tree


@cache
def render(path: Path) -> tuple[Manifest, ...]:
    """Every manifest ``kustomize build`` renders for ``path``."""
    result = kustomize_build(path)
    if result.returncode != 0:
        pytest.fail(f"kustomize build {path} failed:\n{result.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def overlay(name: str) -> tuple[Manifest, ...]:
    return render(k8s_tree() / "overlays" / name)


def find(manifests: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    for manifest in manifests:
        if manifest["kind"] == kind and manifest["metadata"]["name"] == name:
            return manifest
    raise AssertionError(f"no {kind} {name!r} rendered")


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> Iterator[Manifest]:
    return (m for m in manifests if m["kind"] == kind)


def config_data(manifests: tuple[Manifest, ...], kind: str, name: str) -> dict[str, str]:
    """Data of a ConfigMap or Secret by its rendered name (generated names carry a hash)."""
    data: dict[str, str] = find(manifests, kind, name).get("data", {})
    return data


def container(deployment: Manifest, index: int = 0) -> Manifest:
    containers: list[Manifest] = deployment["spec"]["template"]["spec"]["containers"]
    return containers[index]


def container_env(manifests: tuple[Manifest, ...], spec: Manifest) -> dict[str, Any]:
    """Every variable a container gets: envFrom ConfigMaps/Secrets (when rendered), then env.

    A value is the literal string, or the ``valueFrom`` mapping for references.
    """
    env: dict[str, Any] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_data(manifests, "ConfigMap", source["configMapRef"]["name"]))
        elif "secretRef" in source:
            env.update(config_data(manifests, "Secret", source["secretRef"]["name"]))
    for item in spec.get("env", []):
        env[item["name"]] = item["value"] if "value" in item else item["valueFrom"]
    return env
