"""The alerts topic is the record: an alert posted to one gateway is listed by another replica
started later (it reads the topic from the beginning, as a restarted gateway does), as history,
not pushed again as news. Real gateways and Kafka."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from contracts import KafkaSettings
from gateway.auth import hash_key, new_key
from tests.gateway.test_browser_alerts import webhook
from tests.gateway_harness import kafka_env, running_gateway


async def listed(
    client: httpx.AsyncClient, status: str, *, timeout_s: float = 20
) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout_s):
        while True:
            alerts: list[dict[str, Any]] = (await client.get("/v1/alerts")).json()["alerts"]
            if alerts and alerts[0]["status"] == status:
                return alerts
            await asyncio.sleep(0.2)


async def test_another_replica_lists_the_alerts_from_the_topic(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    admin = new_key()
    keys = [{"name": "alertmanager", "role": "admin", "sha256": hash_key(admin)}]
    env = {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_API_KEYS": json.dumps(keys),
    }
    auth = {"Authorization": f"Bearer {admin}"}
    async with (
        running_gateway(env, tmp_path / "a.log") as first,
        httpx.AsyncClient(base_url=first.url, headers=auth, timeout=10) as a,
    ):
        assert (await a.post("/v1/admin/alerts", json=webhook("firing"))).status_code == 202
        assert (await a.post("/v1/admin/alerts", json=webhook("resolved"))).status_code == 202
        await listed(a, "resolved")
    async with running_gateway(env, tmp_path / "b.log") as second:
        async with httpx.AsyncClient(base_url=second.url, headers=auth, timeout=10) as b:
            [alert] = await listed(b, "resolved")
            assert (alert["name"], alert["labels"]["job"]) == ("ServiceDown", "workers")
        ws_url = second.url.replace("http", "ws", 1) + "/v1/ws"
        async with connect(ws_url, additional_headers=auth) as ws:
            seen: list[dict[str, Any]] = []
            while not any(m["type"] == "alerts" for m in seen):
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            [history] = [m for m in seen if m["type"] == "alerts"]
            assert [a["status"] for a in history["alerts"]] == ["resolved"]
            assert not [m for m in seen if m["type"] == "alert"]  # history is not news
