"""The chat page in a real headless Chromium, against the real gateway, Kafka and PostgreSQL,
with no worker: the page asks for a key, connects, says when no model is deployed (and when one
is), shows the review as text, pending then a clear timeout failure, follows statistics written
by others, and survives a gateway restart.
Screenshots go to .artifacts/gateway/."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import expect

from contracts import KafkaSettings
from gateway.auth import hash_key, new_key
from stats.shadow import ShadowRow
from stats.store import DriftCheck
from tests.gateway_harness import (
    ARTIFACTS,
    GatewayProcess,
    announce,
    chromium,
    kafka_env,
    model_event,
    record_feedback,
    record_prediction,
    stats_store,
)

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
ONLINE = re.compile(r"\bconn-online\b")
OFFLINE = re.compile(r"\bconn-offline\b")


@pytest.mark.timeout(240)
async def test_chat_page_without_a_worker(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    key = new_key()
    env = {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_API_KEYS": json.dumps(
            [{"name": "browser", "role": "client", "sha256": hash_key(key)}]
        ),
        "RS_GATEWAY_REPLY_TIMEOUT_S": "3",
        "RS_GATEWAY_STATS_INTERVAL_S": "0.5",
    }
    shots = ARTIFACTS / "gateway"
    shots.mkdir(parents=True, exist_ok=True)
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    try:
        gateway.start()
        await gateway.wait_ready(path="/healthz")
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            crashes: list[str] = []
            page.on("pageerror", lambda error: crashes.append(str(error)))
            await page.goto(gateway.url)

            # No key yet: the page asks for one, then connects with it.
            await expect(page.locator("#key-form")).to_be_visible()
            await expect(page.locator("#conn-text")).to_have_text("API key needed")
            await page.fill("#key-input", key)
            await page.click("#key-form button")
            await expect(page.locator("#conn")).to_have_class(ONLINE)
            await expect(page.locator("#key-form")).to_be_hidden()
            await expect(page.locator("#banner")).to_be_hidden()  # not open mode
            await expect(page.locator("#s-total")).to_have_text("0")

            # No model announced yet: the page says so, and a review is refused at once.
            await expect(page.locator("#model-banner")).to_contain_text("No model is deployed")
            await page.fill("#text", "Too early.")
            await page.click("#send")
            early = page.locator("li.msg.user").last
            await expect(early).to_have_attribute("data-status", "failed")
            await expect(early.locator(".status-text")).to_contain_text("no model is deployed yet")
            await page.screenshot(path=shots / "no-model.png")
            # The registry watcher announces one: the banner goes, and the page says so.
            await announce(kafka, model_event(version="3"))
            await expect(page.locator("#model-banner")).to_be_hidden()
            await expect(page.locator("li.msg.system").last).to_contain_text("v3 is deployed")

            # A hostile review is shown as text, pending, then failed with the reason.
            await page.fill("#text", HOSTILE)
            await page.click("#send")
            bubble = page.locator("li.msg.user").last
            await expect(bubble.locator(".body")).to_have_text(HOSTILE)
            await expect(bubble).to_have_attribute("data-status", "pending")
            await expect(bubble.locator(".status-text")).to_have_text("classifying…")
            assert await bubble.locator("script, img, b").count() == 0
            await expect(bubble).to_have_attribute("data-status", "failed", timeout=20_000)
            await expect(bubble.locator(".status-text")).to_contain_text("no prediction")
            await expect(bubble.locator("button.retry")).to_be_visible()
            assert await page.evaluate("window.__pwned") is None

            # Traffic from elsewhere lands in PostgreSQL: the panel follows it.
            async with stats_store(database_url) as store:
                now = datetime.now(UTC)
                ids = [f"p-{uuid.uuid4().hex}" for _ in range(6)]
                for i, request_id in enumerate(ids):
                    await record_prediction(
                        store,
                        request_id=request_id,
                        label=1 if i < 4 else 0,
                        probability=0.9 if i < 4 else 0.2,
                        model_version="3",
                        predicted_at=now - timedelta(minutes=i % 3),
                    )
                for i, true in [(0, 1), (1, 0), (2, 1), (5, 0)]:  # 3 of 4 right
                    await record_feedback(
                        store, feedback_id=f"fb-{i}", request_id=ids[i], label=true
                    )
                await record_feedback(store, feedback_id="fb-text", text="Lovely.", label=1)
                # Challenger v4 in shadow on the first four (production said 1, 1, 1, 1).
                await store.write_shadow_predictions([
                    ShadowRow(ids[i], "m", "4", label, 0.5, "shadow-1", now)
                    for i, label in enumerate([1, 0, 1, 1])
                ])  # fmt: skip
                # The drift monitor's checks of version 3: the unknown words alarm.
                await store.write_drift("m", [
                    DriftCheck("3", feature, now - timedelta(minutes=m), 300, score,
                               1e-9 if alarm else 0.5, alarm)
                    for m, (feature, score, alarm) in enumerate(
                        [("unknown_share", 0.6, True), ("unknown_share", 0.05, False),
                         ("length", 0.04, False), ("accuracy", 0.91, False)])
                ])  # fmt: skip
            await expect(page.locator("#s-total")).to_have_text("6")
            await expect(page.locator("#s-positive")).to_have_text("66.7%")
            await expect(page.locator("#s-labelled")).to_have_text("4")
            await expect(page.locator("#s-accuracy")).to_have_text("75.0%")
            await expect(page.locator("#models tbody tr")).to_have_count(1)
            await expect(page.locator("#models tbody tr td").first).to_have_text("v3")
            await expect(page.locator("#chart rect.pos")).to_have_count(3)  # minutes 0, 1, 2
            await expect(page.locator("#chart rect.neg")).to_have_count(2)  # minutes 1, 2
            drift = page.locator("#drift .drift-row")
            await expect(drift).to_have_count(3, timeout=20_000)
            await expect(page.locator("#drift-version")).to_have_text("v3 · alarm")
            unknown = page.locator('#drift .drift-row[data-feature="unknown_share"]')
            await expect(unknown.locator(".drift-state")).to_have_text("alarm")
            await expect(unknown.locator(".drift-value")).to_have_text("PSI 0.60")
            await expect(unknown.locator("rect.alarm")).to_have_count(1)
            accuracy = page.locator('#drift .drift-row[data-feature="accuracy"]')
            await expect(accuracy.locator(".drift-value")).to_have_text("91.0%")
            # Side by side: 3 of 4 agree; on the 3 labelled, v4 is right 3 times, v3 twice.
            shadow = page.locator('#shadow tbody tr[data-challenger="4"] td')
            await expect(shadow).to_have_text(
                ["v4 vs v3", "4", "75.0%", "3", "100.0%", "66.7%"], timeout=20_000
            )
            await page.screenshot(path=shots / "no-worker-timeout-and-stats.png")

            # The gateway goes away: the page says so, keeps what is typed, and reconnects.
            gateway.stop()
            await expect(page.locator("#conn")).to_have_class(OFFLINE, timeout=15_000)
            await page.fill("#text", "Typed while the gateway was away.")
            await page.click("#send")
            waiting = page.locator("li.msg.user").last
            await expect(waiting).to_have_attribute("data-status", "waiting")
            await page.screenshot(path=shots / "offline-waiting.png")
            gateway.start()
            await gateway.wait_ready(path="/healthz")
            await expect(page.locator("#conn")).to_have_class(ONLINE, timeout=40_000)
            await expect(waiting).to_have_attribute("data-status", "failed", timeout=30_000)
            await expect(waiting.locator(".status-text")).to_contain_text("no prediction")
            await expect(page.locator("#s-total")).to_have_text("6")
            await page.screenshot(path=shots / "reconnected.png", full_page=True)
            assert crashes == []
    finally:
        gateway.stop()
