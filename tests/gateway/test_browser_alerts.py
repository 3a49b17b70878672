"""The chat page's alerts panel in a real headless Chromium, against the real gateway and
Kafka: an alert posted to the webhook (as Alertmanager does) comes back from the alerts topic
and is listed firing in red, then resolved in grey; its text stays text.
Screenshots go to .artifacts/gateway/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from contracts import KafkaSettings
from gateway.auth import hash_key, new_key
from tests.gateway_harness import ARTIFACTS, chromium, kafka_env, running_gateway

HOSTILE = '<img src=x onerror="window.__pwned = 1">down'


def webhook(status: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "reviewstream-gateway",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "ServiceDown", "severity": "critical", "job": "workers"},
                "annotations": {"summary": HOSTILE},
                "startsAt": "2026-12-02T10:00:00Z",
                "endsAt": "2026-12-02T10:05:00Z",
                "fingerprint": "5e1f",
            }
        ],
    }


@pytest.mark.timeout(180)
async def test_alerts_panel_shows_firing_then_resolved(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    viewer, admin = new_key(), new_key()
    keys = [
        {"name": "browser", "role": "viewer", "sha256": hash_key(viewer)},
        {"name": "alertmanager", "role": "admin", "sha256": hash_key(admin)},
    ]
    env = {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_API_KEYS": json.dumps(keys),
    }
    shots = ARTIFACTS / "gateway"
    shots.mkdir(parents=True, exist_ok=True)
    async with (
        running_gateway(env, tmp_path / "gateway.log") as gateway,
        chromium() as browser,
        httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {admin}"}, timeout=10
        ) as alertmanager,
    ):
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(gateway.url)
        await page.fill("#key-input", viewer)
        await page.click("#key-form button")
        alerts = page.locator("#alerts li")
        await expect(alerts).to_have_text(["no alerts"])

        posted = await alertmanager.post("/v1/admin/alerts", json=webhook("firing"))
        assert posted.status_code == 202, posted.text
        firing = page.locator("#alerts li.alert.firing")
        await expect(firing).to_have_count(1, timeout=20_000)
        await expect(firing.locator(".alert-status")).to_have_text("firing")
        await expect(firing.locator(".alert-summary")).to_have_text(HOSTILE)
        red = await firing.evaluate("e => getComputedStyle(e).borderLeftColor")
        assert red == "rgb(214, 69, 69)"  # --neg
        await page.locator(".stats").screenshot(path=shots / "alert-firing.png")

        assert (await alertmanager.post("/v1/admin/alerts", json=webhook("resolved"))).is_success
        resolved = page.locator("#alerts li.alert.resolved")
        await expect(resolved).to_have_count(1, timeout=20_000)
        await expect(alerts).to_have_count(1)  # the same alert, now resolved
        grey = await resolved.evaluate("e => getComputedStyle(e).color")
        assert grey == "rgb(107, 115, 133)"  # --muted
        await page.locator(".stats").screenshot(path=shots / "alert-resolved.png")
        assert await page.evaluate("window.__pwned") is None
