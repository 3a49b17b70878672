"""The local Prometheus's and Alertmanager's configuration, written from the stack's settings.

- ``prometheus.yml``: one scrape job per service, named as its Kubernetes Service (the rules'
  ``job`` labels hold in both places), its targets in a file beside it (``targets/<job>.json``,
  file-based discovery: rewritten without a restart), plus Prometheus and Alertmanager
  themselves; the rules of ``deploy/monitoring/``; alerts to the local Alertmanager.
- ``alertmanager.yml``: every alert to the gateway's ``POST /v1/admin/alerts``, with a bearer
  API key of admin role read from a file (``credentials_file``) that only this stack knows.

The key is made on first start and kept in the state folder; the gateway learns its hash
through ``RS_GATEWAY_API_KEYS`` (:func:`gateway_keys_env`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from deploy.healthcheck import ENDPOINTS, GATEWAY_API, METRICS_PATH
from deploy.local.settings import StackSettings
from gateway.auth import KeyRecord, Role, hash_key, new_key

# package -> scrape job: the services' Kubernetes names (deploy/k8s/base), as in the rules.
JOBS = {
    "workers": "workers",
    "registry_watcher": "registry-watcher",
    "stats": "stats",
    "gateway": "gateway",
}
KEY_NAME = "alertmanager"
RECEIVER = "reviewstream-gateway"


def duration(seconds: float) -> str:
    """Prometheus's duration syntax: whole seconds, or milliseconds so that 0.5 s stays exact."""
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def prometheus_dir(settings: StackSettings) -> Path:
    return (settings.state_dir / "prometheus").resolve()


def alertmanager_dir(settings: StackSettings) -> Path:
    return (settings.state_dir / "alertmanager").resolve()


def binary(*names: str) -> str:
    """The first of ``names`` on PATH (Debian names Alertmanager prometheus-alertmanager)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(
        f"error: {' or '.join(names)} is not installed; `make monitoring` installs Debian's "
        "prometheus and prometheus-alertmanager (or set RS_STACK_MONITORING=false)"
    )


def service_targets(environ: dict[str, str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each job's file-discovery target groups, from the ports the services read."""
    groups = {}
    for package, job in JOBS.items():
        url = ENDPOINTS[package].url(METRICS_PATH, environ)
        scheme, _, rest = url.partition("://")
        groups[job] = [{"targets": [rest.split("/")[0]], "labels": {"__scheme__": scheme}}]
    return groups


def write_targets(settings: StackSettings) -> Path:
    folder = prometheus_dir(settings) / "targets"
    folder.mkdir(parents=True, exist_ok=True)
    if settings.scrape_targets is not None:
        groups = {job: [{"targets": hosts}] for job, hosts in settings.scrape_targets.items()}
    else:
        groups = service_targets()
    for job in JOBS.values():
        # Written whole then renamed: Prometheus never reads half a file.
        partial = folder / f".{job}.json"
        partial.write_text(json.dumps(groups.get(job, [])))
        partial.replace(folder / f"{job}.json")
    return folder


def prometheus_config(settings: StackSettings, targets: Path) -> dict[str, Any]:
    interval = duration(settings.scrape_interval_s)
    prometheus = "{}:{}".format(*settings.prometheus_address)
    alertmanager = "{}:{}".format(*settings.alertmanager_address)
    jobs: list[dict[str, Any]] = [
        {"job_name": "prometheus", "static_configs": [{"targets": [prometheus]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": [alertmanager]}]},
    ]
    for job in JOBS.values():
        jobs.append(
            {
                "job_name": job,
                "file_sd_configs": [{"files": [str(targets / f"{job}.json")]}],
                # The gateway may serve HTTPS with a certificate for its public name.
                "tls_config": {"insecure_skip_verify": True},
            }
        )
    return {
        "global": {
            "scrape_interval": interval,
            # A scrape may not outlast its interval (Prometheus refuses the config).
            "scrape_timeout": duration(min(settings.scrape_interval_s, 10.0)),
            "evaluation_interval": duration(settings.evaluation_interval_s),
        },
        "rule_files": [str(Path(p).resolve()) for p in settings.alert_rules],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": jobs,
    }


def webhook_url(settings: StackSettings) -> str:
    if settings.alert_webhook_url:
        return settings.alert_webhook_url
    return GATEWAY_API.url("/v1/admin/alerts", dict(os.environ))


def key_file(settings: StackSettings) -> Path:
    return alertmanager_dir(settings) / "api-key"


def ensure_key(settings: StackSettings) -> KeyRecord:
    """Alertmanager's admin key: made once (0600, in the state folder), its hash returned."""
    path = key_file(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.touch(mode=0o600)
        partial.write_text(new_key())
        partial.replace(path)
    return KeyRecord(name=KEY_NAME, role=Role.ADMIN, sha256=hash_key(path.read_text().strip()))


def gateway_keys_env(record: KeyRecord, given: str | None) -> str:
    """``RS_GATEWAY_API_KEYS`` with Alertmanager's record added to the keys already given."""
    keys = [k for k in json.loads(given or "[]") if k.get("name") != record.name]
    return json.dumps([*keys, record.model_dump(mode="json")])


def alertmanager_config(settings: StackSettings) -> dict[str, Any]:
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": ["alertname"],
            "group_wait": duration(settings.alert_group_wait_s),
            "group_interval": duration(settings.alert_group_interval_s),
            "repeat_interval": duration(settings.alert_repeat_interval_s),
        },
        "receivers": [
            {
                "name": RECEIVER,
                "webhook_configs": [
                    {
                        "url": webhook_url(settings),
                        "send_resolved": True,
                        "max_alerts": 100,
                        "http_config": {
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(key_file(settings)),
                            },
                            "tls_config": {"insecure_skip_verify": True},
                        },
                    }
                ],
            }
        ],
    }


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Written by deploy/local/monitoring.py at each start.\n" + yaml.safe_dump(
        config, sort_keys=False
    ))  # fmt: skip
    return path


async def answers(url: str) -> None:
    """Until ``url`` (``/-/ready``, an http URL built from the settings) answers 200."""

    def get() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    # Polling a server we started, as the other readiness checks do: nothing to wait on.
    while not await asyncio.to_thread(get):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
