"""The gateway's two doors, on a real gateway process: the API port asks for a key on every
operational endpoint but liveness, the operations port (probes, Prometheus) asks for none."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from contracts import KafkaSettings
from gateway.auth import hash_key, new_key
from tests.gateway_harness import kafka_env, running_gateway, wait_until_ready

ADMIN, VIEWER = new_key(), new_key()
KEYS = json.dumps([
    {"name": "ops-admin", "role": "admin", "sha256": hash_key(ADMIN)},
    {"name": "ops-viewer", "role": "viewer", "sha256": hash_key(VIEWER)},
])  # fmt: skip


async def test_operational_endpoints_need_a_key_on_the_api_port_and_none_on_the_ops_port(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    env = {**kafka_env(kafka), "DATABASE_URL": database_url, "RS_GATEWAY_API_KEYS": KEYS}
    async with (
        running_gateway(env, tmp_path / "gateway.log") as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as api,
        httpx.AsyncClient(base_url=gateway.ops_url, timeout=30) as ops,
    ):
        await wait_until_ready(ops)  # what a readiness probe sees, without a key
        assert (await ops.get("/healthz")).status_code == 200
        assert "rs_gateway_http_requests_total" in (await ops.get("/metrics")).text
        assert (await ops.get("/v1/classify")).status_code == 404  # the API is not served here

        assert (await api.get("/healthz")).status_code == 200  # liveness says nothing
        viewer, admin = {"X-API-Key": VIEWER}, {"Authorization": f"Bearer {ADMIN}"}
        for path in ("/readyz", "/metrics"):
            assert (await api.get(path)).status_code == 401
            assert (await api.get(path, headers=viewer)).status_code == 403
            assert (await api.get(path, headers=admin)).status_code == 200
        assert (await api.get("/openapi.json")).status_code == 401
        assert (await api.get("/openapi.json", headers=viewer)).status_code == 200
    assert f"health and metrics on http://127.0.0.1:{gateway.ops_port}" in gateway.log()
