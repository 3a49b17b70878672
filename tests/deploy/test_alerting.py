"""Alerting on the real thing: Debian's Prometheus and Alertmanager, started by the project's
launcher (``LocalMonitoring``), watch the four real services; a worker that stops (SIGSTOP)
becomes a ServiceDown alert that reaches the gateway's webhook with Alertmanager's own API key,
is on the alerts topic, in ``GET /v1/alerts`` and pushed over the WebSocket; the worker going on
(SIGCONT) resolves it.

The rules are ``deploy/monitoring/rules.yml`` with ServiceDown's ``for`` cut to 2 s, and every
interval is a second, so the whole chain runs in seconds (the figures are printed).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer
from websockets.asyncio.client import ClientConnection, connect

from contracts import Alert, KafkaSettings, decode
from deploy.local.launcher import LocalMonitoring, LocalStack, free_port
from deploy.local.monitoring import KEY_NAME, gateway_keys_env
from deploy.local.settings import RULES
from gateway.auth import KeyRecord, Role, hash_key, new_key
from tests.gateway_harness import kafka_env, running_gateway
from tests.serving import Processes, eventually, service_env, unique, worker_env

SERVICE_JOBS = {"workers", "registry-watcher", "stats", "gateway"}


def fast_rules(folder: Path) -> Path:
    """The real rules, ServiceDown held 2 s instead of a minute."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "ServiceDown":
                rule["for"] = "2s"
    path = folder / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


async def targets(prometheus: str) -> dict[str, str]:
    """job -> health of its (one) active target."""
    async with httpx.AsyncClient(timeout=5) as http:
        body = (await http.get(f"{prometheus}/api/v1/targets")).json()
    return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}


async def alive(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{url}/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def next_alert(ws: ClientConnection, **expected: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] == "alert" and all(
            message.get(k) == v or message["labels"].get(k) == v for k, v in expected.items()
        ):
            return message


async def alerts_on_topic(kafka: KafkaSettings) -> list[Alert]:
    consumer = AIOKafkaConsumer(
        kafka.alerts_topic,
        **kafka.client(),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=2000)
        return [decode(r.value, Alert) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()


async def test_a_stopped_worker_alerts_the_gateway_through_prometheus_and_alertmanager(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    procs: Processes,
    tmp_path: Path,
) -> None:
    monitoring_state = tmp_path / "monitoring"
    # Alertmanager's key, made where the launcher's Alertmanager reads it; the gateway knows
    # only its hash (as `make up` arranges), and a viewer key for this test's own calls.
    key_file = monitoring_state / "alertmanager" / "api-key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(new_key())
    viewer = new_key()
    record = KeyRecord(name=KEY_NAME, role=Role.ADMIN, sha256=hash_key(key_file.read_text()))
    keys = json.dumps([{"name": "test", "role": "viewer", "sha256": hash_key(viewer)}])
    ports = {job: free_port() for job in ("workers", "registry-watcher", "stats")}
    gateway_env = {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_API_KEYS": gateway_keys_env(record, keys),
    }
    common = {"RS_KAFKA_ALERTS_TOPIC": kafka.alerts_topic}
    worker_settings = {"RS_WORKER_PORT": ports["workers"], **common}

    # The three start while the gateway does (running_gateway waits for it).
    worker = procs.start(
        "workers", worker_env(stack, kafka, unique("m"), unique("g"), **worker_settings)
    )
    procs.start("stats", service_env(
        stack, kafka, DATABASE_URL=database_url, RS_STATS_PORT=ports["stats"],
        RS_STATS_GROUP_ID=unique("stats"), **common))  # fmt: skip
    procs.start("registry_watcher", service_env(
        stack, kafka, RS_WATCHER_PORT=ports["registry-watcher"],
        RS_WATCHER_MODEL_NAMES=unique("m"), **common))  # fmt: skip
    async with running_gateway(gateway_env, tmp_path / "gateway.log") as gateway:
        # Alive before Prometheus looks: a service still starting would be "down" for 2 s.
        for port in ports.values():
            await eventually(
                lambda port=port: alive(f"http://127.0.0.1:{port}"), timeout_s=90, what="alive"
            )
        scrape = {job: [f"127.0.0.1:{port}"] for job, port in ports.items()}
        scrape["gateway"] = [gateway.ops_url.removeprefix("http://")]  # its operations port
        monitoring = LocalMonitoring(
            monitoring_state,
            {
                "RS_STACK_SCRAPE_INTERVAL_S": "1",
                "RS_STACK_EVALUATION_INTERVAL_S": "1",
                "RS_STACK_ALERT_GROUP_WAIT_S": "1",
                "RS_STACK_ALERT_GROUP_INTERVAL_S": "1",
                "RS_STACK_ALERT_RULES": json.dumps([str(fast_rules(tmp_path))]),
                "RS_STACK_SCRAPE_TARGETS": json.dumps(scrape),
                "RS_STACK_ALERT_WEBHOOK_URL": f"{gateway.url}/v1/admin/alerts",
            },
        )
        try:
            started = time.monotonic()
            monitoring.start()
            prometheus = monitoring.prometheus_url

            async def all_up() -> bool:
                health = await targets(prometheus)
                return set(health) >= SERVICE_JOBS | {"prometheus", "alertmanager"} and all(
                    h == "up" for h in health.values()
                )

            await eventually(all_up, timeout_s=90, what="every target up in Prometheus")
            up_s = time.monotonic() - started

            ws_url = gateway.url.replace("http", "ws", 1) + "/v1/ws"
            auth = {"Authorization": f"Bearer {viewer}"}
            async with (
                connect(ws_url, additional_headers=auth) as ws,
                httpx.AsyncClient(base_url=gateway.url, headers=auth, timeout=10) as http,
            ):
                stopped = time.monotonic()
                # Stopped (SIGSTOP), as a hung process: its port takes connections and never
                # answers, so every scrape fails; SIGCONT brings it back without a restart.
                worker.signal(signal.SIGSTOP)
                firing = await asyncio.wait_for(
                    next_alert(ws, name="ServiceDown", status="firing", job="workers"), 60
                )
                firing_s = time.monotonic() - stopped
                assert firing["severity"] == "critical"
                assert firing["labels"]["instance"] == f"127.0.0.1:{ports['workers']}"
                assert firing["summary"] == f"workers at 127.0.0.1:{ports['workers']} is down"
                listed = (await http.get("/v1/alerts")).json()["alerts"]
                assert [(a["name"], a["status"]) for a in listed][:1] == [("ServiceDown", "firing")]

                worker.signal(signal.SIGCONT)  # answering again: the alert resolves
                back = time.monotonic()
                resolved = await asyncio.wait_for(
                    next_alert(ws, name="ServiceDown", status="resolved", job="workers"), 90
                )
                resolved_s = time.monotonic() - back
                assert resolved["fingerprint"] == firing["fingerprint"]
                assert resolved["ends_at"] is not None
                listed = (await http.get("/v1/alerts")).json()["alerts"]
                assert [(a["name"], a["status"]) for a in listed][:1] == [
                    ("ServiceDown", "resolved")
                ]
        finally:
            monitoring.stop()

    on_topic = [a for a in await alerts_on_topic(kafka) if a.name == "ServiceDown"]
    assert {a.status.value for a in on_topic} == {"firing", "resolved"}
    assert {a.labels["job"] for a in on_topic} == {"workers"}
    print(
        f"\ntargets up {up_s:.1f}s after start; worker stopped -> firing alert on the "
        f"WebSocket {firing_s:.1f}s; worker on again -> resolved {resolved_s:.1f}s"
    )
