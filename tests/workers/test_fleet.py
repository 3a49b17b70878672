"""The fleet's acknowledgement, end to end: MLflow is stopped while the alias moves and started
again later; both workers retry the new version with backoff, report each failure on the fleet
topic, and end up on it without a restart. The gateway's ``GET /v1/admin/fleet`` shows the
retries, then the acknowledgement. Real Kafka, a real MLflow server of this test's own (so that
stopping it touches no other test), real workers and a real gateway."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from contracts import KafkaSettings
from deploy.local.launcher import LocalStack, free_port
from deploy.local.processes import ServiceProcess, kafka_env
from inference.registry import serving_version
from tests.gateway_harness import announce, running_gateway
from tests.serving import Processes, eventually, register, unique, worker_env


def own_mlflow(tmp_path: Path) -> ServiceProcess:
    """The local stack's MLflow server (``deploy.local.mlflow_server``) on a port and state
    folder of this test's own: stopped and started again on the same ones."""
    port = free_port()
    return ServiceProcess(
        "deploy.local.mlflow_server",
        env={
            "RS_STACK_STATE_DIR": str(tmp_path / "state"),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        },
        log_path=tmp_path / "mlflow.log",
        port=port,
    )


async def test_workers_retry_while_mlflow_is_away_and_acknowledge_once_it_is_back(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlflow = own_mlflow(tmp_path)
    mlflow.start()
    try:
        await mlflow.wait_ready(120, path="/health")
        # Its own admin, whose password it made at first start (not the session stack's).
        admin = (tmp_path / "state" / "mlflow" / "credentials" / "admin").read_text().strip()
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin)
        client = MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
        name = unique("model")
        old = register(client, name, tmp_path, seed=1)
        first = serving_version(client, name, "production")
        assert first is not None
        await announce(kafka, first)  # as the registry watcher would

        env = worker_env(
            stack,
            kafka,
            name,
            unique("group"),
            MLFLOW_TRACKING_URI=mlflow.url,
            MLFLOW_TRACKING_PASSWORD=admin,
            RS_WORKER_HEARTBEAT_S=1,
            RS_WORKER_LOAD_RETRY_CAP_S=2,
        )
        workers = {wid: procs.start("workers", env | {"RS_WORKER_ID": wid}) for wid in ("w1", "w2")}
        gateway_env = kafka_env(kafka) | {
            "DATABASE_URL": database_url,
            "RS_GATEWAY_OPEN_MODE": "true",
        }
        async with (
            running_gateway(gateway_env, tmp_path / "gateway.log") as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
        ):

            async def fleet() -> dict[str, Any]:
                response = await http.get("/v1/admin/fleet")
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                return body

            def model_of(body: dict[str, Any]) -> dict[str, Any]:
                # Empty until the gateway has read the models topic: not acknowledged yet.
                found = [m for m in body["models"] if m["model_name"] == name]
                return dict(found[0]) if found else {}

            async def acknowledged(version: str) -> bool:
                body = await fleet()
                model = model_of(body)
                return bool(
                    model.get("version") == version
                    and model["acknowledged"]
                    and model["live_workers"] == 2
                )

            await eventually(
                lambda: acknowledged(old), timeout_s=90, what=f"both workers on version {old}"
            )

            # The alias moves, and MLflow goes away before any worker could download it.
            new = register(client, name, tmp_path, seed=2)
            moved = serving_version(client, name, "production")
            assert moved is not None
            assert moved.version == new
            mlflow.stop()
            await announce(kafka, moved)

            async def retrying() -> bool:
                body = await fleet()
                reports = {w["worker_id"]: w for w in body["workers"]}
                return all(
                    reports[w]["wanted_version"] == new
                    and reports[w]["load_attempts"] >= 2
                    and reports[w]["version"] == old
                    and reports[w]["live"]
                    for w in workers
                )

            await eventually(retrying, timeout_s=60, what="both workers retrying version " + new)
            during = await fleet()
            assert not model_of(during)["acknowledged"]
            assert model_of(during)["pending"] == ["w1", "w2"]
            for report in during["workers"]:
                assert report["state"] in {"failed", "loading"}
                assert report["error"], report
                assert "retrying with backoff" in report["error"]
            for worker in workers.values():  # the old version keeps serving
                assert (await worker.get("/readyz")).status == 200

            mlflow.start()
            await mlflow.wait_ready(120, path="/health")
            back_at = time.monotonic()
            await eventually(
                lambda: acknowledged(new), timeout_s=90, what=f"both workers on version {new}"
            )
            took_s = time.monotonic() - back_at
            print(f"every worker acknowledged {new} {took_s:.1f}s after MLflow answered again")

            after = {w["worker_id"]: w for w in (await fleet())["workers"]}
            for wid, worker in workers.items():
                assert worker.alive(), f"{wid} restarted or died"
                assert after[wid]["state"] == "serving"
                assert after[wid]["load_attempts"] >= 2  # the retries it took stay visible
                assert after[wid]["error"] is None
                assert after[wid]["lag"] is not None
                assert await worker.metric("rs_worker_model_version") == float(new)
                failures = await worker.metric("rs_worker_model_load_failures_total")
                assert failures >= 2
    finally:
        mlflow.kill()
