"""The rendered dev overlay as Debian 12's ``podman kube play`` (4.3.1) can take it.

Podman plays Deployments (one pod per replica, ``<name>-pod-<n>``), Pods and ConfigMaps (in
the same file). A Job is not played: its pod template is, as a Pod of the Job's name. Every
other kind (Namespace, Service, Ingress, HorizontalPodAutoscaler, PodDisruptionBudget, CronJob,
Strimzi's KafkaUser) is set aside; ``tests/deploy`` validates those offline.

``ForPodman`` makes the changes podman 4.3.1 needs; a cluster sees none of them:

- images: ``reviewstream/<target>`` (and external/mlflow.yaml's registry name) become those
  ``make images`` tagged;
- names: what podman keeps in the host's global namespaces (pods, secrets, volumes) gets the
  run's prefix, references included, so that runs never collide;
- Secrets are not played but made with ``podman secret create``, in the two forms 4.3.1 reads:
  a played Secret is stored as YAML, which its ``secretKeyRef`` lookup refuses ("secret X is
  not valid JSON"), and its secret volumes write the base64 text of ``data`` values, drop
  ``stringData``, ignore ``items`` and ``defaultMode``, and crash (nil pointer, volume.go:165)
  on a volume without ``optional``. So env references read ``<prefix><name>`` (JSON: key ->
  base64 value), and each secret volume reads a secret of its own holding its items under
  their paths (``{"data": {path: value}}``), with ``optional: false`` written out;
- emptyDir: 4.3.1 names the volume after the pod's volume name, so every pod with an emptyDir
  ``tmp`` would share one volume ``tmp`` with every other (and with any volume of that name on
  the host): each gets a name of its own, ``<prefix><owner>-<volume>``;
- a pod with init containers runs with ``restartPolicy: OnFailure``: 4.3.1 gives its init
  containers the pod's policy, and under ``Always`` (a Deployment's) an init container that
  finished is started again, forever, and the pod's other containers never start;
- ``$(VAR)`` in command and args: the kubelet expands it from the container's env, 4.3.1
  passes it on as written; it is expanded here (literal values and secretKeyRefs);
- ``ports``: 4.3.1 publishes every ``containerPort`` on the host, on the same port and every
  address (``hostPort`` defaults to it), so workers and shadow-workers (both 9101) cannot
  both start ("address already in use") and the pods would take host ports: they are left
  out, and kept aside (``ports``) for the probes' named ports;
- ``metadata.namespace`` is dropped (podman has none).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy import dev_secrets

Manifest = dict[str, Any]

PLAYED = ("Deployment", "Pod", "ConfigMap", "PersistentVolumeClaim")
AS_POD = ("Job",)  # its pod template is played as a Pod
MADE = ("Secret",)  # made with podman secret create (see the docstring)
VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def render_dev_overlay(kustomize: Path, k8s: Path, folder: Path) -> tuple[list[Manifest], str]:
    """``kustomize build`` of a copy of the dev overlay with secrets files of its own (fresh,
    as ``make k8s-dev-secrets`` writes them; a developer's own are left out of the copy), and
    the admin API key they hold."""
    tree = folder / "k8s"
    shutil.copytree(k8s, tree, ignore=shutil.ignore_patterns("secrets"))
    api_key = dev_secrets.k8s_dev(tree / "overlays" / "dev") or ""
    out = subprocess.run(
        [str(kustomize), "build", str(tree / "overlays" / "dev")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [m for m in yaml.safe_load_all(out) if m], api_key


def load(path: Path) -> list[Manifest]:
    return [m for m in yaml.safe_load_all(path.read_text()) if m]


def name_of(manifest: Manifest) -> str:
    return str(manifest["metadata"]["name"])


def set_aside(manifests: Iterable[Manifest]) -> list[Manifest]:
    """What podman does not play, nor the test make."""
    return [m for m in manifests if m["kind"] not in PLAYED + AS_POD + MADE]


def secret_data(secret: Manifest) -> dict[str, str]:
    """A Secret's keys and values (``data`` decoded, ``stringData`` as is)."""
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return values | dict(secret.get("stringData") or {})


def config_data(manifests: Iterable[Manifest], name: str) -> dict[str, str]:
    """The data of the ConfigMap ``name`` (a generated one's name has a hash suffix)."""
    for m in manifests:
        if m["kind"] == "ConfigMap" and (name_of(m) == name or name_of(m).startswith(f"{name}-")):
            return dict(m.get("data") or {})
    raise KeyError(f"no ConfigMap {name}")


def secret(name: str, values: dict[str, str]) -> Manifest:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "type": "Opaque", "stringData": values}  # fmt: skip


def pod_spec_of(manifest: Manifest) -> Manifest | None:
    if manifest["kind"] in ("Deployment", "Job"):
        spec: Manifest = manifest["spec"]["template"]["spec"]
        return spec
    return manifest["spec"] if manifest["kind"] == "Pod" else None


@dataclass
class ForPodman:
    """Rewrites manifests for podman 4.3.1 (see the module's docstring); ``env_secrets`` and
    ``volume_secrets`` are the podman secrets its pods then read (name -> key -> value)."""

    prefix: str
    image_of: Callable[[str], str]
    secrets: dict[str, Manifest]  # every Secret the pods may read, by its name in the manifests
    env_secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    volume_secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    # "<played name>/<container>" -> the container's ports, left out of what podman plays
    ports: dict[str, list[Manifest]] = field(default_factory=dict)
    configs: list[Manifest] = field(default_factory=list)  # the ConfigMaps envFrom names

    def rewrite(self, manifests: Iterable[Manifest]) -> list[Manifest]:
        manifests = list(manifests)
        self.configs = [m for m in manifests if m["kind"] == "ConfigMap"]
        out: list[Manifest] = []
        for original in manifests:
            m = copy.deepcopy(original)
            m["metadata"].pop("namespace", None)
            kind, name = m["kind"], name_of(m)
            if kind == "ConfigMap":
                out.append(m)
            elif kind == "PersistentVolumeClaim":
                m["metadata"]["name"] = self.prefix + name
                out.append(m)
            elif kind in ("Deployment", "Pod"):
                m["metadata"]["name"] = self.prefix + name
                self.pod_spec(name, pod_spec_of(m) or {})
                out.append(m)
            elif kind in AS_POD:
                template = m["spec"]["template"]
                self.pod_spec(name, template["spec"])
                out.append({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": self.prefix + name,
                                 "labels": template["metadata"].get("labels", {})},
                    "spec": template["spec"],
                })  # fmt: skip
        return out

    def pod_spec(self, owner: str, spec: Manifest) -> None:
        if spec.get("initContainers") and spec.get("restartPolicy", "Always") == "Always":
            spec["restartPolicy"] = "OnFailure"
        renamed: dict[str, str] = {}
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                renamed[volume["name"]] = f"{self.prefix}{owner}-{volume['name']}"
                volume["name"] = renamed[volume["name"]]
            if "secret" in volume:
                source = volume["secret"]
                source["secretName"] = self.for_volume(
                    source["secretName"], source.pop("items", None)
                )
                source["optional"] = False
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                claim["claimName"] = self.prefix + claim["claimName"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            c["image"] = self.image_of(c["image"])
            if "ports" in c:
                self.ports[f"{self.prefix}{owner}/{c['name']}"] = c.pop("ports")
            for mount in c.get("volumeMounts", []):
                mount["name"] = renamed.get(mount["name"], mount["name"])
            self.fold_env_from(c)
            env: dict[str, str] = {}
            for item in c.get("env", []):
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref is not None:
                    values = secret_data(self.secrets[ref["name"]])
                    if ref["key"] in values:
                        env[item["name"]] = values[ref["key"]]
                    ref["name"] = self.for_env(ref["name"])
                elif "value" in item:
                    env[item["name"]] = item["value"]
            for key in ("command", "args"):
                if key in c:
                    c[key] = expand(c[key], env)

    def fold_env_from(self, container: Manifest) -> None:
        """podman 4.3.1 lets ``envFrom`` win over ``env``, the reverse of Kubernetes (the
        shadow worker took the serving role): the ConfigMaps' values become ``env`` entries
        after the container's own, each name once, the container's own first."""
        own = {item["name"] for item in container.get("env", [])}
        folded: dict[str, str] = {}
        for source in container.pop("envFrom", []):
            values = config_data(self.configs, source["configMapRef"]["name"])
            folded |= {k: v for k, v in values.items() if k not in own}
        if folded:
            container["env"] = [
                *container.get("env", []),
                *({"name": k, "value": v} for k, v in folded.items()),
            ]

    def for_env(self, name: str) -> str:
        """The podman secret ``secretKeyRef`` reads for Secret ``name``."""
        self.env_secrets[self.prefix + name] = secret_data(self.secrets[name])
        return self.prefix + name

    def for_volume(self, name: str, items: list[dict[str, str]] | None) -> str:
        """A podman secret holding the files a secret volume of Secret ``name`` shows."""
        values = secret_data(self.secrets[name])
        files = {i["path"]: values[i["key"]] for i in items} if items else values
        # Named after the items chosen (key -> path), not only the paths: two pods may read
        # different keys under the same file name.
        digest = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:8]
        made = f"{self.prefix}{name}-{digest}"
        self.volume_secrets[made] = files
        return made


def expand(arguments: list[str], env: dict[str, str]) -> list[str]:
    """``$(VAR)`` replaced by the variable's value, as the kubelet does; unknown ones kept."""
    return [VARIABLE.sub(lambda v: env.get(v[1], v[0]), a) for a in arguments]


def env_secret_json(values: dict[str, str]) -> str:
    """What 4.3.1's secretKeyRef reads: JSON, each key's value base64 encoded."""
    return json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()})


def volume_secret_json(files: dict[str, str]) -> str:
    """What 4.3.1's secret volume writes as files: ``data``'s values as they are."""
    return json.dumps({"data": files})


def image_mapper(registry: str, tag: str, known: Iterable[str]) -> Callable[[str], str]:
    """``reviewstream/worker:dev`` (or ``registry.example.com/reviewstream/mlflow:0.1.0``) ->
    ``{registry}/worker:{tag}``; an image of no known target is an error. The Kafka and
    PostgreSQL stand-ins' own names pass as they are."""
    targets = set(known)

    def image_of(image: str) -> str:
        if image.startswith(f"{registry}/"):
            return image
        target = image.rsplit("/", 1)[-1].split(":")[0].split("@")[0]
        if target not in targets:
            raise ValueError(f"{image}: not one of the images make images builds {sorted(targets)}")
        return f"{registry}/{target}:{tag}"

    return image_of
