"""The real gateway on the real Kafka and PostgreSQL, with no worker running.

No model announced on the models topic means no worker can answer: the gateway says so at once
(503 no_model). A model announced but no worker running is a real condition too, and the
gateway must answer it with a 504 after its timeout, never hang; its in-flight bound answers
429 meanwhile. What it published is read back from Kafka. Kafka going away and coming back is a
real broker stopped and started.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contracts import Feedback, KafkaSettings, ReviewRequest, decode
from deploy.local.launcher import free_port
from deploy.local.processes import ServiceProcess
from gateway.app import create_app
from gateway.auth import hash_key, new_key
from gateway.settings import Settings
from runtime.database import DatabaseSettings
from tests.gateway_harness import (
    announce,
    kafka_env,
    model_event,
    running_gateway,
    wait_for_model,
    wait_until_ready,
)

ADMIN_KEY = new_key()
KEYS = json.dumps([{"name": "it-admin", "role": "admin", "sha256": hash_key(ADMIN_KEY)}])
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def read_topic(settings: KafkaSettings, topic: str, count: int) -> list[bytes]:
    """The first ``count`` records of a topic, from the beginning; fails after a deadline."""
    consumer = AIOKafkaConsumer(
        topic,
        **settings.client(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            values += [r.value for records in batches.values() for r in records if r.value]
        assert len(values) >= count, f"only {len(values)} of {count} records on {topic}"
        return values
    finally:
        await consumer.stop()


async def test_no_worker_means_504_the_bound_means_429_and_requests_are_on_kafka(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    instance = f"gw-it-{uuid.uuid4().hex[:6]}"
    env = {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_API_KEYS": KEYS,
        "RS_GATEWAY_INSTANCE_ID": instance,
        "RS_GATEWAY_MAX_IN_FLIGHT": "2",
        "RS_GATEWAY_REPLY_TIMEOUT_S": "4",
    }
    await announce(kafka, model_event())  # a model is deployed; no worker runs
    async with (
        running_gateway(env, tmp_path / "gateway.log") as gateway,
        httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=30) as http,
    ):
        await wait_until_ready(http)
        await wait_for_model(http, "deployed")
        texts = ["The waiter was charming.", "Forty minutes for a cold pizza."]
        calls = [asyncio.create_task(http.post("/v1/classify", json={"text": t})) for t in texts]
        deadline = time.monotonic() + 20
        while (await http.get("/v1/admin/status")).json()["in_flight"] < 2:
            assert time.monotonic() < deadline, "the two reviews never became in flight"
            await asyncio.sleep(0.05)

        refused = await http.post("/v1/classify", json={"text": "One more."})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"

        for call in calls:
            timed_out = await call
            assert timed_out.status_code == 504
            assert "within 4 s" in timed_out.json()["message"]
        assert (await http.get("/v1/admin/status")).json()["in_flight"] == 0

        feedback = await http.post("/v1/feedback", json={"text": "Superb!", "label": 1})
        assert feedback.status_code == 202

        metrics = (await http.get("/metrics")).text
        assert 'rs_gateway_reviews_total{outcome="timeout",transport="rest"} 2.0' in metrics
        assert 'rs_gateway_reviews_total{outcome="overloaded",transport="rest"} 1.0' in metrics

    published = [decode(v, ReviewRequest) for v in await read_topic(kafka, kafka.requests_topic, 2)]
    assert sorted(r.text for r in published) == sorted(texts)
    assert {(r.reply_to, r.source.value) for r in published} == {(instance, "rest")}
    [sent] = [decode(v, Feedback) for v in await read_topic(kafka, kafka.feedback_topic, 1)]
    assert (sent.text, sent.label, sent.feedback_id) == (
        "Superb!",
        1,
        feedback.json()["feedback_id"],
    )


async def test_no_model_is_503_at_once_until_one_is_announced(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    env = {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_API_KEYS": KEYS,
        "RS_GATEWAY_REPLY_TIMEOUT_S": "2",
    }
    log = tmp_path / "gateway.log"
    async with (
        running_gateway(env, log) as gateway,
        httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=30) as http,
    ):
        await wait_until_ready(http)
        await wait_for_model(http, "none")  # the empty models topic, read to its end
        for path, body in [
            ("/v1/classify", {"text": "The waiter was charming."}),
            ("/v1/classify/batch", {"reviews": [{"text": "Cold."}, {"text": "Warm."}]}),
        ]:
            started = time.monotonic()
            refused = await http.post(path, json=body)
            elapsed = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            assert elapsed < 1.0, f"{path} took {elapsed:.2f} s"
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["error"] == "no_model"
            assert refused.json()["message"].startswith("no model is deployed yet")

        # The watcher announces a model: the same gateway follows, no restart.
        await announce(kafka, model_event(version="4"))
        await wait_for_model(http, "deployed")
        model = (await http.get("/v1/model")).json()
        assert (model["model_name"], model["version"]) == ("reviewstream-sentiment", "4")
        published = await http.post("/v1/classify", json={"text": "Now it is sent."})
        assert published.status_code == 504  # sent; no worker runs here
    said = log.read_text()
    assert "no model announced on" in said
    assert "model deployed: reviewstream-sentiment version 4" in said
    assert " ERROR " not in said


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its real Kafka and PostgreSQL adapters, served in this event loop."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


def database(url: str) -> DatabaseSettings:
    return DatabaseSettings.model_validate({"DATABASE_URL": url})


async def test_readiness_names_what_is_unreachable(kafka: KafkaSettings, database_url: str) -> None:
    settings = Settings(kafka=kafka, database=database(database_url), open_mode=True)
    async with in_process(settings) as http:
        await wait_until_ready(http)
        assert (await http.get("/readyz")).json() == {
            "service": "gateway",
            "ready": True,
            "checks": {"kafka": True, "database": True, "background_tasks": True},
        }
    closed = f"postgresql://nobody:nothing@127.0.0.1:{free_port()}/none"
    settings = Settings(kafka=kafka, database=database(closed), open_mode=True)
    async with in_process(settings) as http:
        deadline = time.monotonic() + 30
        while True:
            ready = await http.get("/readyz")
            if ready.json()["checks"]["kafka"]:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert ready.status_code == 200  # the database is optional: statistics only
        assert ready.json()["checks"] == {
            "kafka": True,
            "database": False,
            "background_tasks": True,
        }
        assert ready.json()["degraded"] == ["database"]
        stats = await http.get("/v1/stats/summary")
        assert stats.status_code == 503
        assert stats.json()["error"] == "stats_unavailable"


class Broker:
    """A Kafka broker of our own (the project's launcher) that this test may stop and start."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = free_port()
        env = {
            "RS_STACK_STATE_DIR": str(state),
            "RS_STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
            # Its own, not the session stack's (inherited from the environment).
            "RS_STACK_KAFKA_SASL_PORT": str(free_port()),
            "RS_STACK_KAFKA_HEAP_MB": "256",
            "RS_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
        }
        self.launcher = ServiceProcess("deploy.local.kafka", env=env, log_path=state / "broker.log")

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.launcher.start()

    def stop(self) -> None:
        self.launcher.stop(timeout_s=60)


async def poll_readiness(http: httpx.AsyncClient, *, ready: bool, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (await http.get("/readyz")).json()["checks"]["kafka"] is not ready:
        assert time.monotonic() < deadline, f"Kafka readiness never became {ready}"
        await asyncio.sleep(0.25)


@pytest.mark.timeout(300)
async def test_kafka_down_is_503_and_the_gateway_recovers_when_it_returns(
    database_url: str, tmp_path: Path
) -> None:
    broker = Broker(tmp_path / "broker")
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
        database=database(database_url),
        open_mode=True,
        reply_timeout_s=1,
        publish_timeout_s=2,
    )
    review = {"text": "Kind nurses, long wait."}
    try:
        async with in_process(settings) as http:
            # 1. Kafka is not there at start-up: the gateway runs, says why it cannot serve.
            down = await http.post("/v1/classify", json=review)
            assert down.status_code == 503
            assert down.headers["retry-after"] == "5"
            assert "not reachable" in down.json()["message"]
            assert (await http.get("/readyz")).status_code == 503

            # 2. Kafka arrives: the gateway connects by itself; a model is announced but no
            #    worker runs, so the review is published and times out.
            broker.start()
            await poll_readiness(http, ready=True, timeout_s=150)
            await announce(settings.kafka, model_event())
            await wait_for_model(http, "deployed")
            assert (await http.post("/v1/classify", json=review)).status_code == 504

            # 3. Kafka goes away while the gateway runs: 503 again, not a hang.
            broker.stop()
            gone = await http.post("/v1/classify", json=review)
            assert gone.status_code == 503, gone.text
            assert gone.json()["error"] == "kafka_unavailable"
            await poll_readiness(http, ready=False, timeout_s=30)

            # 4. ...and comes back: the same clients reconnect, publishing works again.
            broker.start()
            await poll_readiness(http, ready=True, timeout_s=150)
            deadline = time.monotonic() + 60
            while (back := await http.post("/v1/classify", json=review)).status_code == 503:
                assert time.monotonic() < deadline, back.text
                await asyncio.sleep(0.5)
            assert back.status_code == 504, back.text
    finally:
        broker.stop()
