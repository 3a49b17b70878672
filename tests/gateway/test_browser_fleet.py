"""The chat page's Fleet panel in a real headless Chromium, against the real gateway and Kafka:
hidden for a viewer key; for an admin key, each worker's report from the fleet topic (a failed
load with its retries, its reason as text), then the acknowledgement once it serves the version
the models topic names. Screenshots go to .artifacts/gateway/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Page, expect

from contracts import KafkaSettings, WorkerState, WorkerStatus, encode
from contracts.messages import utc_now
from gateway.auth import hash_key, new_key
from tests.gateway_harness import (
    ARTIFACTS,
    announce,
    chromium,
    kafka_env,
    model_event,
    running_gateway,
)

HOSTILE = '<img src=x onerror="window.__pwned = 1">download failed'


async def report(kafka: KafkaSettings, status: WorkerStatus) -> None:
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka.fleet_topic, encode(status), key=status.worker_id.encode()
        )
    finally:
        await producer.stop()


def status(state: WorkerState, version: str, **fields: object) -> WorkerStatus:
    return WorkerStatus.model_validate(
        {
            "worker_id": "w1",
            "model_name": "reviewstream-sentiment",
            "alias": "production",
            "state": state,
            "version": version,
            "wanted_version": "2",
            "heartbeat_s": 60,  # live for the whole test
            "started_at": utc_now(),
            **fields,
        }
    )


async def sign_in(page: Page, url: str, key: str) -> None:
    await page.goto(url)
    await page.fill("#key-input", key)
    await page.click("#key-form button")
    await expect(page.locator("#conn")).to_have_class("conn conn-online", timeout=20_000)


@pytest.mark.timeout(180)
async def test_fleet_panel_for_admins_shows_retries_then_the_acknowledgement(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    viewer, admin = new_key(), new_key()
    keys = [
        {"name": "browser", "role": "viewer", "sha256": hash_key(viewer)},
        {"name": "ops", "role": "admin", "sha256": hash_key(admin)},
    ]
    env = {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_API_KEYS": json.dumps(keys),
    }
    shots = ARTIFACTS / "gateway"
    shots.mkdir(parents=True, exist_ok=True)
    await announce(kafka, model_event(version="2"))
    await report(kafka, status(WorkerState.FAILED, "1", load_attempts=3, error=HOSTILE))
    async with running_gateway(env, tmp_path / "gateway.log") as gateway, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await sign_in(page, gateway.url, viewer)
        await expect(page.locator("#fleet-panel")).to_be_hidden()
        await page.close()

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await sign_in(page, gateway.url, admin)
        panel = page.locator("#fleet-panel")
        await expect(panel).to_be_visible()
        row = page.locator("#fleet tbody tr.fleet-row")
        await expect(row).to_have_count(1, timeout=20_000)
        await expect(row.locator("td")).to_have_text(
            ["w1", "failed", "v1", "v2", "3", "?", re.compile(r"^\d+s ago$")], timeout=20_000
        )
        assert await row.get_attribute("title") == HOSTILE  # text, never HTML
        await expect(page.locator("#fleet-summary")).to_contain_text("waiting for 1")
        await panel.screenshot(path=shots / "fleet-retrying.png")

        await report(kafka, status(WorkerState.SERVING, "2", load_attempts=3))
        await expect(page.locator("#fleet-summary")).to_contain_text(
            "reviewstream-sentiment@production v2: acknowledged", timeout=20_000
        )
        await expect(row.locator("td").nth(1)).to_have_text("serving")
        await panel.screenshot(path=shots / "fleet-acknowledged.png")
        assert await page.evaluate("window.__pwned === undefined")
