"""The statistics endpoints read what the stats processor wrote to the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from contracts import KafkaSettings
from deploy.local.launcher import LocalStack
from gateway.app import create_app
from gateway.auth import KeyRecord, Role, hash_key, new_key
from gateway.settings import Settings
from runtime.database import DatabaseSettings
from stats.roles import READER, WRITER
from stats.shadow import ShadowRow
from stats.store import DriftCheck
from tests.gateway_harness import (
    record_feedback,
    record_prediction,
    stats_store,
    wait_for_model,
    wait_until_ready,
)

VIEWER, ADMIN = new_key(), new_key()


@pytest.fixture
async def http(
    kafka: KafkaSettings, database_url: str, stack: LocalStack
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway as deployed: it reads as the reader role, which may only SELECT."""
    reader_url = stack.database_url_as(READER.name, database_url)
    settings = Settings(
        kafka=kafka,
        database=DatabaseSettings.model_validate({"DATABASE_URL": reader_url}),
        api_keys=[
            KeyRecord(name="viewer", role=Role.VIEWER, sha256=hash_key(VIEWER)),
            KeyRecord(name="admin", role=Role.ADMIN, sha256=hash_key(ADMIN)),  # /readyz
        ],
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"X-API-Key": VIEWER}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw", headers=headers
        ) as client:
            # Started for real before the test (and so before the shutdown): a gateway stopped
            # while its Kafka clients are still connecting leaves aiokafka connections behind.
            await wait_until_ready(client, headers={"X-API-Key": ADMIN})
            await wait_for_model(client, "none")
            yield client


@pytest.fixture
async def rows(database_url: str, stack: LocalStack) -> dict[str, str]:
    """Two model versions over two minutes, some of it labelled by feedback, written by the
    processor's store as the writer role."""
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    earlier = minute - timedelta(minutes=1)
    ids: dict[str, str] = {}
    async with stats_store(stack.database_url_as(WRITER.name, database_url)) as store:
        # version 1: 3 predictions (2 positive), 2 labelled, 1 right
        for name, label, at in [("a", 1, earlier), ("b", 1, earlier), ("c", 0, minute)]:
            ids[name] = f"{name}-{uuid.uuid4().hex}"
            await record_prediction(
                store, request_id=ids[name], label=label, probability=0.8, model_version="1",
                predicted_at=at, latency_ms=10.0,
            )  # fmt: skip
        # version 2: 2 predictions (1 positive), both labelled and right
        for name, label in [("d", 1), ("e", 0)]:
            ids[name] = f"{name}-{uuid.uuid4().hex}"
            await record_prediction(
                store, request_id=ids[name], label=label, probability=0.7, model_version="2",
                predicted_at=minute, latency_ms=30.0,
            )  # fmt: skip
        # true labels: a right, b wrong, d and e right; one more answers a prediction not stored
        for i, (name, true) in enumerate([("a", 1), ("b", 0), ("d", 1), ("e", 0)]):
            await record_feedback(store, feedback_id=f"fb-{i}", request_id=ids[name], label=true)
        await record_feedback(store, feedback_id="fb-text", text="Great.", label=1)
        await record_feedback(store, feedback_id="fb-early", request_id="not-yet", label=0)
    return ids


async def test_summary_totals_split_and_accuracy_per_version(
    http: httpx.AsyncClient, rows: dict[str, str]
) -> None:
    response = await http.get("/v1/stats/summary")
    assert response.status_code == 200, response.text
    summary = response.json()
    assert (summary["predictions"], summary["positives"], summary["negatives"]) == (5, 3, 2)
    assert summary["positive_share"] == pytest.approx(0.6)
    assert (summary["labelled"], summary["correct"]) == (4, 3)
    assert summary["accuracy"] == pytest.approx(0.75)
    assert (summary["feedback"], summary["feedback_waiting"]) == (6, 1)
    versions = {m["model_version"]: m for m in summary["models"]}
    assert set(versions) == {"1", "2"}
    one, two = versions["1"], versions["2"]
    assert (one["predictions"], one["positives"], one["labelled"], one["correct"]) == (3, 2, 2, 1)
    assert one["accuracy"] == pytest.approx(0.5)
    assert one["latency"]["mean_ms"] == pytest.approx(10.0)
    assert 5.0 < one["latency"]["p50_ms"] <= 10.0  # from the histogram, capped by the max
    assert (two["predictions"], two["accuracy"]) == (2, 1.0)
    assert two["latency"]["max_ms"] == pytest.approx(30.0)


async def test_windows_per_version_and_granularity(
    http: httpx.AsyncClient, rows: dict[str, str]
) -> None:
    minutes = (await http.get("/v1/stats/windows", params={"limit": 5})).json()
    assert minutes["granularity"] == "minute"
    cells = {(w["model_version"], w["window_start"]): w for w in minutes["windows"]}
    assert len(cells) == 3  # v1 in two minutes, v2 in one
    starts = sorted({w["window_start"] for w in minutes["windows"]})
    assert len(starts) == 2
    v1_earlier = cells[("1", starts[0])]
    assert (v1_earlier["predictions"], v1_earlier["labelled"], v1_earlier["correct"]) == (2, 2, 1)
    assert v1_earlier["accuracy"] == pytest.approx(0.5)
    assert cells[("2", starts[1])]["latency"]["mean_ms"] == pytest.approx(30.0)
    assert cells[("2", starts[1])]["positive_share"] == pytest.approx(0.5)

    only_two = await http.get("/v1/stats/windows", params={"model_version": "2", "limit": 5})
    assert {w["model_version"] for w in only_two.json()["windows"]} == {"2"}

    hours = (await http.get("/v1/stats/windows", params={"granularity": "hour", "limit": 2})).json()
    assert sum(w["predictions"] for w in hours["windows"]) == 5


async def test_recent_predictions_newest_first(
    http: httpx.AsyncClient, rows: dict[str, str]
) -> None:
    recent = (await http.get("/v1/stats/recent", params={"limit": 3})).json()["predictions"]
    by_id = {r["request_id"]: r for r in recent}
    assert set(by_id) == {rows["c"], rows["d"], rows["e"]}  # the minute-old ones fall off
    assert (by_id[rows["e"]]["verdict"], by_id[rows["e"]]["true_label"]) == ("negative", 0)
    assert by_id[rows["c"]]["true_label"] is None
    everything = (await http.get("/v1/stats/recent")).json()["predictions"]
    times = [r["predicted_at"] for r in everything]
    assert len(times) == 5
    assert times == sorted(times, reverse=True)


async def test_viewer_reads_but_may_not_classify(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/stats/summary")).status_code == 200
    refused = await http.post("/v1/classify", json={"text": "Hi."})
    assert refused.status_code == 403


async def test_drift_checks_per_version_with_the_latest_state(
    http: httpx.AsyncClient, database_url: str
) -> None:
    now = datetime.now(UTC)
    checks = [
        DriftCheck("1", "confidence", now - timedelta(minutes=3), 300, 0.02, 0.4, False),
        DriftCheck("1", "confidence", now - timedelta(minutes=1), 300, 0.41, 1e-9, True),
        DriftCheck("1", "length", now - timedelta(minutes=1), 300, 0.05, 0.2, False),
        DriftCheck("2", "accuracy", now - timedelta(minutes=2), 200, 0.93, None, False),
        DriftCheck("2", "length", now - timedelta(hours=3), 300, 0.9, 1e-12, True),  # too old
    ]
    async with stats_store(database_url) as store:
        await store.write_drift("monitor-a", checks)
        await store.write_drift("monitor-a", checks)  # written twice: kept once

    drift = await http.get("/v1/stats/drift", params={"minutes": 60})
    assert drift.status_code == 200, drift.text
    body = drift.json()
    assert [(c["model_version"], c["feature"], c["alarm"]) for c in body["checks"]] == [
        ("1", "confidence", False), ("2", "accuracy", False),
        ("1", "confidence", True), ("1", "length", False),
    ]  # fmt: skip
    versions = {v["model_version"]: v for v in body["versions"]}
    assert versions["1"]["alarm"] is True
    assert [p["feature"] for p in versions["1"]["latest"]] == ["confidence", "length"]
    assert versions["1"]["latest"][0]["score"] == 0.41
    assert versions["2"]["alarm"] is False
    only = await http.get("/v1/stats/drift", params={"minutes": 600, "model_version": "2"})
    assert [c["feature"] for c in only.json()["checks"]] == ["length", "accuracy"]
    bad = await http.get("/v1/stats/drift", params={"minutes": 0})
    assert bad.status_code == 422


async def test_shadow_shows_the_challenger_beside_production(
    http: httpx.AsyncClient, rows: dict[str, str], database_url: str
) -> None:
    empty = await http.get("/v1/stats/shadow")
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"comparisons": []}
    # Challenger v3 in shadow on a, b, c (production v1 said 1, 1, 0; truth a=1, b=0).
    now = datetime.now(UTC)
    shadow = [
        ShadowRow(rows[name], "m", "3", label, 0.6, "shadow-1", now)
        for name, label in [("a", 1), ("b", 0), ("c", 1)]
    ]
    async with stats_store(database_url) as store:
        await store.write_shadow_predictions(shadow)

    reply = await http.get("/v1/stats/shadow")
    assert reply.status_code == 200, reply.text
    (c,) = reply.json()["comparisons"]
    assert (c["challenger_version"], c["production_version"]) == ("3", "1")
    assert (c["compared"], c["agreed"], c["labelled"]) == (3, 1, 2)
    assert (c["challenger_accuracy"], c["production_accuracy"]) == (1.0, 0.5)
    assert (await http.get("/v1/stats/shadow", params={"model_version": "4"})).json() == {
        "comparisons": []
    }
    assert (await http.get("/v1/stats/shadow", params={"version": "3"})).status_code == 422
