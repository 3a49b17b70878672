"""The kubelet's part that podman 4.3 leaves out: a pod's probes, run as the kubelet runs them.

``podman kube play`` turns a liveness or startup probe into a health check that runs inside
the container (an ``httpGet`` becomes ``curl -f http://localhost:PORT/PATH``: the images have
no curl) and that only systemd's timers schedule, and it ignores readiness probes. This runs
every probe of the manifest itself: ``httpGet`` and ``tcpSocket`` from the host to the pod's
address on the run's network, as the kubelet does from the node, ``exec`` in the container.
A container is ready when it runs, its startup probe has passed once and its liveness and
readiness probes pass; one without probes, when it runs. A pod of a Job is done when its
containers exited 0.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from deploy.podman.report import SmokeFailed, podman

Manifest = dict[str, Any]
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


@dataclass
class Container:
    pod: str
    name: str  # podman's: <pod>-<container>
    spec: Manifest
    ports: list[Manifest]  # the manifest's (podman would publish them: not played)
    job: bool = False  # runs to completion
    started: bool = False  # its startup probe passed
    ready_after: float | None = None
    address: str = ""  # the pod's, on the run's network
    last: dict[str, str] = field(default_factory=dict)  # probe -> its last result

    @property
    def probes(self) -> dict[str, Manifest]:
        return {p: self.spec[p] for p in PROBES if p in self.spec}


def containers_of(
    manifests: list[Manifest], ports: dict[str, list[Manifest]] | None = None
) -> list[Container]:
    """The containers podman makes for ``manifests`` (named as kube play names them);
    ``ports``: "<manifest>/<container>" -> the ports taken out of what podman plays."""
    found = []
    for m in manifests:
        if m["kind"] == "Deployment":
            spec = m["spec"]["template"]["spec"]
            pods = [f"{m['metadata']['name']}-pod-{i}" for i in range(m["spec"].get("replicas", 1))]
        elif m["kind"] == "Pod":
            spec, pods = m["spec"], [m["metadata"]["name"]]
        else:
            continue
        # A Job's pod runs to completion; a Deployment's never does, whatever its policy (one
        # with init containers is played with OnFailure, see kube_manifests).
        job = m["kind"] == "Pod" and spec.get("restartPolicy") in ("OnFailure", "Never")
        for pod in pods:
            found += [
                Container(pod, f"{pod}-{c['name']}", c,
                          (ports or {}).get(f"{m['metadata']['name']}/{c['name']}", []), job)
                for c in spec["containers"]
            ]  # fmt: skip
    return found


def pod_address(pod: str, network: str) -> str:
    infra = json.loads(podman("pod", "inspect", pod))
    infra = infra[0] if isinstance(infra, list) else infra
    inspect = json.loads(podman("inspect", infra["InfraContainerID"]))[0]
    return str(inspect["NetworkSettings"]["Networks"][network]["IPAddress"])


def port_number(port: int | str, container: Container) -> int:
    if isinstance(port, int):
        return port
    for p in [*container.spec.get("ports", []), *container.ports]:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise SmokeFailed(f"probe port {port!r} is not a port of the container")


def run_probe(probe: Manifest, container: Container, address: str) -> tuple[bool, str]:
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        get = probe["httpGet"]
        scheme = str(get.get("scheme", "HTTP")).lower()
        url = f"{scheme}://{address}:{port_number(get['port'], container)}{get.get('path', '/')}"
        try:
            # As the kubelet: an HTTPS probe does not verify the pod's certificate.
            response = httpx.get(url, timeout=timeout, verify=False)  # noqa: S501
        except httpx.HTTPError as exc:
            return False, f"GET {url}: {type(exc).__name__} {exc}"
        ok = 200 <= response.status_code < 400
        return ok, f"GET {url}: {response.status_code} {response.text[:200]!r}"
    if "tcpSocket" in probe:
        port = port_number(probe["tcpSocket"]["port"], container)
        try:
            socket.create_connection((address, port), timeout=timeout).close()
        except OSError as exc:
            return False, f"connect {address}:{port}: {exc}"
        return True, f"connect {address}:{port}: open"
    command = probe["exec"]["command"]
    try:
        done = subprocess.run(["podman", "exec", container.name, *command],
                              capture_output=True, text=True, timeout=timeout + 5)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, f"exec {command}: still running after {timeout} s"
    output = (done.stdout + done.stderr).strip()[-200:]
    return done.returncode == 0, f"exec {command}: exit {done.returncode} {output!r}"


def state_of(container: Container) -> dict[str, Any]:
    found = subprocess.run(["podman", "inspect", "--format", "json", container.name],
                           capture_output=True, text=True)  # fmt: skip
    if found.returncode != 0:
        return {}
    state: dict[str, Any] = json.loads(found.stdout)[0]["State"]
    return state


def check(container: Container, network: str) -> bool:
    """One round of the kubelet's checks; True once the container is ready (or done)."""
    state = state_of(container)
    status = str(state.get("Status", "missing"))
    container.last["state"] = f"{status} (exit code {state.get('ExitCode')})"
    if container.job:
        return status == "exited" and state.get("ExitCode") == 0
    if status != "running":
        return False
    address = container.address or pod_address(container.pod, network)
    container.address = address
    probes = container.probes
    if "startupProbe" in probes and not container.started:
        container.started, container.last["startupProbe"] = run_probe(
            probes["startupProbe"], container, address
        )
        if not container.started:
            return False
    ready = True
    for name in ("livenessProbe", "readinessProbe"):
        if name in probes:
            ok, container.last[name] = run_probe(probes[name], container, address)
            ready = ready and ok
    return ready


def wait_ready(containers: list[Container], network: str, timeout_s: float) -> None:
    """Check every container until all are ready (or done); printed as each gets there."""
    began = time.monotonic()
    waiting = list(containers)
    while waiting:
        for c in list(waiting):
            if check(c, network):
                c.ready_after = time.monotonic() - began
                what = "done" if c.job else "ready"
                print(f"    {c.name}: {what} after {c.ready_after:.0f} s", flush=True)
                waiting.remove(c)
        if waiting and time.monotonic() - began > timeout_s:
            names = ", ".join(c.name for c in waiting)
            raise SmokeFailed(f"not ready after {timeout_s:.0f} s: {names}")
        if waiting:
            time.sleep(2)
