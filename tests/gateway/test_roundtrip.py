"""The gateway with real workers: REST round trips, two replicas each getting their own replies,
and the chat page from review to verdict to feedback, with the stats processor writing the
panel's numbers.

These start ``python -m workers`` (and ``python -m stats``) as subprocesses, with the settings
of the test's topics, database and model.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from mlflow import MlflowClient
from playwright.async_api import expect
from websockets.asyncio.client import ClientConnection, connect

from contracts import Feedback, KafkaSettings, decode
from deploy.local.launcher import LocalStack, free_port
from deploy.local.processes import ServiceProcess
from gateway.auth import hash_key, new_key
from inference.registry import register_bundle, serving_version
from inference.synthetic import make_fast_bundle
from tests.gateway_harness import (
    ARTIFACTS,
    GatewayProcess,
    announce,
    chromium,
    kafka_env,
    running_gateway,
    wait_until_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = new_key()
KEYS = json.dumps([{"name": "e2e", "role": "admin", "sha256": hash_key(KEY)}])
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def model(stack: LocalStack, kafka: KafkaSettings, tmp_path: Path) -> tuple[str, str]:
    """A small real bundle registered in MLflow, served under the production alias, and
    announced on the test's models topic as the registry watcher would."""
    client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    name = f"gw-e2e-{uuid.uuid4().hex[:8]}"
    run = client.create_run(client.create_experiment(name))
    bundle = make_fast_bundle(tmp_path / "bundle", seed=11)
    version = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    client.set_registered_model_alias(name, "production", version.version)
    event = serving_version(client, name, "production")
    assert event is not None
    await announce(kafka, event)
    return name, str(version.version)


def worker(
    stack: LocalStack, kafka: KafkaSettings, model: tuple[str, str], log: Path, **extra: str
) -> AbstractAsyncContextManager[ServiceProcess]:
    """``python -m workers`` serving ``model``, until the block ends, once it is ready."""
    port = free_port()
    env = {
        **kafka_env(kafka),
        "MLFLOW_TRACKING_URI": stack.mlflow_uri,
        "RS_WORKER_MODEL_NAME": model[0],
        "RS_WORKER_GROUP_ID": f"workers-{uuid.uuid4().hex[:8]}",
        "RS_WORKER_PORT": str(port),
        **extra,
    }
    return ServiceProcess("workers", env=env, log_path=log, port=port).running(timeout_s=180)


def stats(
    kafka: KafkaSettings, database_url: str, log: Path
) -> AbstractAsyncContextManager[ServiceProcess]:
    """``python -m stats`` on the test's topics and database, until the block ends."""
    port = free_port()
    env = {**kafka_env(kafka), "DATABASE_URL": database_url, "RS_STATS_PORT": str(port)}
    return ServiceProcess("stats", env=env, log_path=log, port=port).running(timeout_s=180)


def gateway_env(kafka: KafkaSettings, database_url: str, **extra: str) -> dict[str, str]:
    return {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_API_KEYS": KEYS,
        "RS_GATEWAY_REPLY_TIMEOUT_S": "30",
        **extra,
    }


async def test_classify_round_trip_through_a_real_worker(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    model: tuple[str, str],
    tmp_path: Path,
) -> None:
    env = gateway_env(kafka, database_url)
    async with (
        worker(stack, kafka, model, tmp_path / "worker.log"),
        running_gateway(env, tmp_path / "gateway.log") as gateway,
        httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as http,
    ):
        await wait_until_ready(http)
        one = await http.post("/v1/classify", json={"text": "The staff were wonderful."})
        assert one.status_code == 200, one.text
        body = one.json()
        assert (body["model_name"], body["model_version"]) == model
        assert body["label"] in (0, 1)
        assert body["verdict"] == ("positive" if body["label"] else "negative")
        assert 0.5 <= body["confidence"] <= 1.0

        texts = ["Cold fries.", "Best museum in town!", "Fine."]
        batch = await http.post(
            "/v1/classify/batch", json={"reviews": [{"text": t} for t in texts]}
        )
        assert batch.status_code == 200, batch.text
        results = batch.json()["results"]
        assert len(results) == 3
        assert len({r["request_id"] for r in results}) == 3


async def test_two_gateways_each_get_their_own_replies(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    model: tuple[str, str],
    tmp_path: Path,
) -> None:
    async with AsyncExitStack() as stack_of:
        await stack_of.enter_async_context(worker(stack, kafka, model, tmp_path / "worker.log"))
        gateways = [
            await stack_of.enter_async_context(
                running_gateway(
                    gateway_env(kafka, database_url, RS_GATEWAY_INSTANCE_ID=f"gw-{name}"),
                    tmp_path / f"gateway-{name}.log",
                )
            )
            for name in ("a", "b")
        ]
        clients = [httpx.AsyncClient(base_url=g.url, headers=AUTH, timeout=60) for g in gateways]
        try:
            for http in clients:
                await wait_until_ready(http)
            per_gateway = 12
            calls = [
                http.post("/v1/classify", json={"text": f"Review {i} via gateway {n}."})
                for n, http in enumerate(clients)
                for i in range(per_gateway)
            ]
            answers = await asyncio.gather(*calls)
            assert [a.status_code for a in answers] == [200] * len(calls)
            assert len({a.json()["request_id"] for a in answers}) == len(calls)
            for http in clients:
                metrics = (await http.get("/metrics")).text
                matched = _counter(metrics, "matched")
                other = _counter(metrics, "other")
                assert matched == per_gateway  # its own replies, each once
                assert other >= per_gateway  # it saw the other's and left them alone
        finally:
            for http in clients:
                await http.aclose()


def _counter(metrics: str, outcome: str) -> float:
    found = re.search(rf'rs_gateway_replies_total\{{outcome="{outcome}"\}} ([0-9.e+]+)', metrics)
    return float(found.group(1)) if found else 0.0


async def test_chat_page_with_a_worker_and_the_stats_processor(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    model: tuple[str, str],
    tmp_path: Path,
) -> None:
    env = gateway_env(kafka, database_url, RS_GATEWAY_OPEN_MODE="true",
                      RS_GATEWAY_STATS_INTERVAL_S="0.5")  # fmt: skip
    shots = ARTIFACTS / "gateway"
    shots.mkdir(parents=True, exist_ok=True)
    async with (
        worker(stack, kafka, model, tmp_path / "worker.log"),
        stats(kafka, database_url, tmp_path / "stats.log"),
    ):
        gateway = GatewayProcess(env, tmp_path / "gateway.log")
        try:
            gateway.start()
            await gateway.wait_ready(path="/healthz")
            async with chromium() as browser:
                page = await browser.new_page(viewport={"width": 1280, "height": 860})
                crashes: list[str] = []
                page.on("pageerror", lambda error: crashes.append(str(error)))
                await page.goto(gateway.url)
                await expect(page.locator("#conn")).to_have_class(re.compile(r"\bconn-online\b"))
                await expect(page.locator("#banner")).to_contain_text("Open mode")
                await expect(page.locator("#s-total")).to_have_text("0")

                # "My label": negative. It is feedback at once, whatever the model says.
                await page.fill("#text", "The tasting menu was superb and the staff were kind.")
                await page.select_option("#label", "0")
                await page.click("#send")
                verdict = page.locator("li.msg.bot").last
                await expect(verdict.locator(".verdict")).to_have_text(
                    re.compile("Positive|Negative"), timeout=60_000
                )
                await expect(verdict.locator(".meta")).to_contain_text(f"v{model[1]}")
                await expect(verdict.locator(".meta")).to_contain_text("confidence")
                model_said = (await verdict.locator(".verdict").inner_text()).lower()
                await expect(verdict.locator(".agreement")).to_have_text(
                    f"you said negative · model: {model_said} "
                    + ("(agrees)" if model_said == "negative" else "(disagrees)")
                )
                await expect(page.locator("#s-labelled")).to_have_text("1", timeout=30_000)
                accuracy = "100.0%" if model_said == "negative" else "0.0%"
                await expect(page.locator("#s-accuracy")).to_have_text(accuracy)
                await expect(page.locator("#s-with-label")).to_have_text("100.0%")
                request_id = await verdict.get_attribute("data-request-id")
                assert request_id
                # Pin the bubble by its id: `.last` would move on to the next reply.
                verdict = page.locator(f'li.msg.bot[data-request-id="{request_id}"]')

                # Why? Each word of the review marked by its push, named in words too.
                await verdict.locator("button.why").click()
                marks = verdict.locator(".explanation mark.w")
                await expect(marks).to_have_count(10, timeout=30_000)
                await expect(verdict.locator(".why-head")).to_contain_text(f"v{model[1]}")
                await expect(verdict.locator(".explanation .legend")).to_contain_text(
                    "towards positive"
                )
                await expect(verdict.locator(".why-top").first).to_contain_text("Most positive")
                first_word = await marks.first.get_attribute("aria-label")
                assert first_word is not None
                signed = r"[+\u2212]\d+\.\d\d"  # the page writes a real minus sign
                assert re.fullmatch(rf"The: {signed} towards (positive|negative)", first_word)
                await verdict.screenshot(path=shots / "why.png")

                script = "<script>window.__pwned = 1</script>"
                await page.fill("#text", script)
                await page.click("#send")
                await expect(page.locator("li.msg.user .body").last).to_have_text(script)
                await expect(page.locator("li.msg.bot")).to_have_count(2, timeout=60_000)
                assert await page.evaluate("window.__pwned") is None

                # the stats processor writes the predictions; the panel follows
                await expect(page.locator("#s-total")).to_have_text("2", timeout=60_000)

                await expect(page.locator("#s-with-label")).to_have_text("50.0%")

                # A correction that flips the agreement: the accuracy moves by exactly one
                # review (of one), and the count of labelled predictions stays.
                flip = "button.agree" if model_said == "positive" else "button.wrong"
                await verdict.locator(flip).click()
                await expect(verdict.locator(".fb-note")).to_contain_text("Thanks", timeout=30_000)
                flipped = "0.0%" if accuracy == "100.0%" else "100.0%"
                await expect(page.locator("#s-accuracy")).to_have_text(flipped, timeout=30_000)
                await expect(page.locator("#s-labelled")).to_have_text("1")
                await page.screenshot(path=shots / "with-worker-verdict-feedback.png")
                assert crashes == []
        finally:
            gateway.stop()

    feedback = await _read_feedback(kafka)
    assert feedback.request_id == request_id
    assert feedback.source.value == "ws"
    conn = await asyncpg.connect(database_url)
    try:
        true_label = await conn.fetchval(
            "SELECT true_label FROM predictions WHERE request_id = $1", request_id
        )
        stored = await conn.fetchval("SELECT count(*) FROM predictions")
    finally:
        await conn.close()
    assert true_label == feedback.label
    assert stored == 2  # the two reviews; "Why?" asked again, and is not counted


async def _read_feedback(kafka: KafkaSettings) -> Feedback:
    consumer = AIOKafkaConsumer(
        kafka.feedback_topic,
        **kafka.client(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    return decode(record.value, Feedback)
        raise AssertionError("no feedback on the topic")
    finally:
        await consumer.stop()


async def test_labels_corrections_and_retries_count_once_through_rest(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    model: tuple[str, str],
    tmp_path: Path,
) -> None:
    """A label sent with the review is one feedback row and one labelled prediction; a
    correction moves ``correct`` by exactly one; a retry with the same Idempotency-Key, on
    this replica or another, gets the identical answer and is counted once."""
    async with AsyncExitStack() as running:
        await running.enter_async_context(worker(stack, kafka, model, tmp_path / "worker.log"))
        await running.enter_async_context(stats(kafka, database_url, tmp_path / "stats.log"))
        gateways = [
            await running.enter_async_context(
                running_gateway(
                    gateway_env(kafka, database_url, RS_GATEWAY_INSTANCE_ID=f"gw-{name}"),
                    tmp_path / f"gateway-{name}.log",
                )
            )
            for name in ("a", "b")
        ]
        a, b = (httpx.AsyncClient(base_url=g.url, headers=AUTH, timeout=60) for g in gateways)
        try:
            for http in (a, b):
                await wait_until_ready(http)
            review = {"text": "The soup was cold and the waiter rude.", "label": 0}
            key = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
            first = await a.post("/v1/classify", json=review, headers=key)
            assert first.status_code == 200, first.text
            answer = first.json()
            request_id = answer["request_id"]
            agrees = int(answer["label"] == 0)

            async def summary() -> dict[str, int]:
                body = (await a.get("/v1/stats/summary")).json()
                return {k: body[k] for k in ("predictions", "labelled", "correct", "with_label")}

            expected = {"predictions": 1, "labelled": 1, "correct": agrees, "with_label": 1}
            await _until(lambda: summary(), expected, what="the label counted as feedback")
            rows = await _fetch(database_url, "SELECT request_id, label FROM feedback")
            assert rows == [(request_id, 0)]

            # Retries: the same replica remembers; the other finds it in PostgreSQL.
            again = await a.post("/v1/classify", json=review, headers=key)
            elsewhere = await b.post("/v1/classify", json=review, headers=key)
            assert again.json() == answer
            assert elsewhere.json() == answer
            other = await a.post("/v1/classify", json={"text": "Another review."}, headers=key)
            assert other.status_code == 422
            assert other.json()["error"] == "idempotency_conflict"

            # "I agree" after all? No: "That's wrong" the other way round, via REST.
            fixed = await a.post("/v1/feedback", json={"request_id": request_id, "label": 1})
            assert fixed.status_code == 202
            expected["correct"] = int(answer["label"] == 1)
            await _until(lambda: summary(), expected, what="the correction counted")
            assert await summary() == expected  # the retries added no prediction
            rows = await _fetch(database_url, "SELECT true_label FROM predictions")
            assert rows == [(1,)]
        finally:
            for http in (a, b):
                await http.aclose()


async def test_a_request_the_worker_dead_letters_is_answered_at_once(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    model: tuple[str, str],
    tmp_path: Path,
) -> None:
    """The worker's text limit is below the gateway's: its error reply reaches the client as
    a 422 right away, not as a 504 after the reply timeout (30 s here)."""
    async with (
        worker(stack, kafka, model, tmp_path / "worker.log", RS_WORKER_MAX_TEXT_CHARS="40"),
        running_gateway(gateway_env(kafka, database_url), tmp_path / "gateway.log") as gateway,
        httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as http,
    ):
        await wait_until_ready(http)
        ok = await http.post("/v1/classify", json={"text": "Short and sweet."})
        assert ok.status_code == 200, ok.text
        long_text = "A long review that the worker will refuse. " * 3
        started = time.perf_counter()
        refused = await http.post("/v1/classify", json={"text": long_text})
        elapsed = time.perf_counter() - started
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["error"] == "rejected_by_worker"
        assert "the limit is 40" in body["message"]
        assert elapsed < 1.0, f"the refusal took {elapsed:.2f} s"
        batch = await http.post(
            "/v1/classify/batch", json={"reviews": [{"text": "Fine."}, {"text": long_text}]}
        )
        assert batch.status_code == 422
        assert batch.json()["details"][0]["field"] == "reviews.1"
        print(f"worker refusal answered in {elapsed * 1000:.0f} ms")


async def _until(
    read: Callable[[], Awaitable[dict[str, int]]], expected: dict[str, int], *, what: str
) -> None:
    deadline = time.monotonic() + 60
    while (found := await read()) != expected:
        assert time.monotonic() < deadline, f"{what}: {found} != {expected}"
        await asyncio.sleep(0.3)


async def _fetch(database_url: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(database_url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_explanations_over_rest_and_websocket_follow_a_hot_reload(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    model: tuple[str, str],
    tmp_path: Path,
) -> None:
    text = "The soup was cold, the staff were wonderful!"
    async with (
        worker(stack, kafka, model, tmp_path / "worker.log"),
        running_gateway(gateway_env(kafka, database_url), tmp_path / "gateway.log") as gateway,
        httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as http,
    ):
        await wait_until_ready(http)
        first = await http.post("/v1/explain", json={"text": text})
        assert first.status_code == 200, first.text
        body = first.json()
        assert (body["model_name"], body["model_version"]) == model
        explanation = body["explanation"]
        assert explanation["method"] == "ngram_sum"
        words = explanation["words"]
        assert [w["word"] for w in words] == [
            "The", "soup", "was", "cold", "the", "staff", "were", "wonderful", "!",
        ]  # fmt: skip
        assert all(text[w["start"] : w["end"]] == w["word"] for w in words)
        total = explanation["base"] + sum(w["weight"] for w in words)
        assert total == pytest.approx(explanation["logit"], abs=1e-4)
        assert 1 / (1 + math.exp(-explanation["logit"])) == pytest.approx(
            body["probability"], abs=1e-5
        )

        # Bad input gets the same clear errors as classify.
        for bad, status, error in [
            ({"text": "   "}, 422, "invalid_body"),
            ({"text": text, "label": 1}, 422, "invalid_body"),
            ({"text": "x" * 30_000}, 422, "invalid_body"),
        ]:
            refused = await http.post("/v1/explain", json=bad)
            assert refused.status_code == status, refused.text
            assert refused.json()["error"] == error
        garbage = await http.post(
            "/v1/explain", content=b"{", headers={"content-type": "application/json"}
        )
        assert garbage.status_code == 400

        # The same over the WebSocket, with the same errors.
        url = gateway.url.replace("http", "ws", 1) + "/v1/ws"
        async with connect(url, additional_headers=AUTH) as ws:
            await ws.send(json.dumps({"type": "explain", "id": "e1", "text": text}))
            await ws.send(json.dumps({"type": "explain", "id": "e2", "text": ""}))
            answers = await _ws_answers(ws, {"e1", "e2"})
        assert answers["e1"]["type"] == "explanation"
        assert answers["e1"]["explanation"] == explanation  # same version, same words
        assert (answers["e2"]["type"], answers["e2"]["status"]) == ("error", 422)

        # A new version goes live: explanations now come from it.
        client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
        bundle = make_fast_bundle(tmp_path / "bundle-2", seed=12)
        run = client.create_run(client.create_experiment(f"{model[0]}-next"))
        newer = register_bundle(client, run_id=run.info.run_id, bundle=bundle,
                                model_name=model[0])  # fmt: skip
        client.set_registered_model_alias(model[0], "production", newer.version)
        event = serving_version(client, model[0], "production")
        assert event is not None
        await announce(kafka, event)
        deadline = time.monotonic() + 60
        while (again := (await http.post("/v1/explain", json={"text": text})).json())[
            "model_version"
        ] != str(newer.version):
            assert time.monotonic() < deadline, again
            await asyncio.sleep(0.3)
        reloaded = again["explanation"]
        assert [w["word"] for w in reloaded["words"]] == [w["word"] for w in words]
        assert [w["weight"] for w in reloaded["words"]] != [w["weight"] for w in words]


async def _ws_answers(ws: ClientConnection, ids: set[str]) -> dict[str, dict[str, object]]:
    """The answers to these message ids, skipping the pushed stats and model messages."""
    answers: dict[str, dict[str, object]] = {}
    async with asyncio.timeout(60):
        while set(answers) != ids:
            message = json.loads(await ws.recv())
            if message.get("id") in ids:
                answers[message["id"]] = message
    return answers
