"""MLflow's registry webhook wakes the watcher: checked signatures, and a real move end to end.

The unit tests hold :class:`~registry_watcher.webhook.WebhookCheck` against MLflow's own signing
function; the stack test has the real MLflow server post a real alias move to a watcher that
otherwise polls once an hour, and a worker serve the new version, while forged, badly signed
and stale deliveries are refused and counted. Polling alone (webhooks off) ships as before:
``tests/workers/test_hot_reload.py`` runs the watcher without a webhook secret.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from mlflow.webhooks import constants
from mlflow.webhooks.delivery import _generate_hmac_signature

from contracts import KafkaSettings
from deploy.local.launcher import LocalStack
from deploy.mlflow_access import ensure_secret_file
from deploy.mlflow_webhook import EVENTS, ensure_webhook, webhooks
from registry_watcher import webhook
from registry_watcher.webhook import (
    EVENTS as WATCHED,
)
from registry_watcher.webhook import (
    PATH,
    AliasEvent,
    Refused,
    TagEvent,
    WebhookCheck,
    signature,
)
from tests.serving import (
    Processes,
    eventually,
    mlflow_client,
    register,
    service_env,
    unique,
    worker_env,
)

SECRET = b"a-test-secret"
NOW = 1_800_000_000


def delivery(
    payload: dict[str, object], *, secret: bytes = SECRET, sent: int = NOW
) -> tuple[dict[str, str], bytes]:
    """Headers and body as MLflow sends them (mlflow/webhooks/delivery.py)."""
    body = json.dumps(payload)
    delivery_id = str(uuid.uuid4())
    return {
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": str(sent),
        "X-MLflow-Signature": _generate_hmac_signature(
            secret.decode(), delivery_id, str(sent), body
        ),
        "Content-Type": "application/json",
    }, body.encode()


def alias_moved(name: str, version: str, alias: str = "production") -> dict[str, object]:
    return {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2027-01-15T08:00:00+00:00",
        "data": {"name": name, "alias": alias, "version": version},
    }


def check(max_age_s: float = 300) -> WebhookCheck:
    return WebhookCheck(SECRET, max_age_s, clock=lambda: NOW)


def refusal(headers: dict[str, str], body: bytes, checker: WebhookCheck | None = None) -> str:
    with pytest.raises(Refused) as refused:
        (checker or check()).verify(headers, body)
    return refused.value.reason


def test_a_delivery_signed_as_mlflow_signs_is_an_alias_event() -> None:
    headers, body = delivery(alias_moved("m", "7"))
    sent = datetime(2027, 1, 15, 8, tzinfo=UTC)
    assert check().verify(headers, body) == AliasEvent("m", "production", "7", sent)
    assert headers["X-MLflow-Signature"] == signature(
        SECRET, headers["X-MLflow-Delivery-Id"], str(NOW), body
    )


def test_the_headers_are_mlflows() -> None:
    for name in (
        "WEBHOOK_SIGNATURE_HEADER",
        "WEBHOOK_TIMESTAMP_HEADER",
        "WEBHOOK_DELIVERY_ID_HEADER",
        "WEBHOOK_SIGNATURE_VERSION",
    ):
        assert getattr(webhook, name) == getattr(constants, name)


def test_other_events_are_no_alias_event() -> None:
    headers, body = delivery({"entity": "model_version", "action": "created", "data": {}})
    assert check().verify(headers, body) is None


def test_unsigned_badly_signed_and_tampered_deliveries_are_refused() -> None:
    headers, body = delivery(alias_moved("m", "7"))
    unsigned = {k: v for k, v in headers.items() if k != "X-MLflow-Signature"}
    assert refusal(unsigned, body) == "unsigned"
    forged, _ = delivery(alias_moved("m", "7"), secret=b"not-the-secret")
    forged |= {"X-MLflow-Delivery-Id": headers["X-MLflow-Delivery-Id"]}
    assert refusal(forged, body) == "bad_signature"
    assert refusal(headers, body.replace(b'"7"', b'"8"')) == "bad_signature"
    # The timestamp is signed too: moving it breaks the signature.
    assert refusal(headers | {"X-MLflow-Timestamp": str(NOW + 1)}, body) == "bad_signature"


def test_stale_future_and_replayed_deliveries_are_refused() -> None:
    assert refusal(*delivery(alias_moved("m", "7"), sent=NOW - 301)) == "stale"
    assert refusal(*delivery(alias_moved("m", "7"), sent=NOW + 301)) == "stale"
    checker = check()
    headers, body = delivery(alias_moved("m", "7"))
    assert checker.verify(headers, body) is not None
    assert refusal(headers, body, checker) == "replayed"


def test_a_signed_body_that_is_not_a_webhook_payload_is_a_400() -> None:
    headers, body = delivery({"entity": "model_version_alias"})
    with pytest.raises(Refused) as refused:
        check().verify(headers, body)
    assert (refused.value.reason, refused.value.status) == ("malformed", 400)


def test_the_deploy_job_subscribes_to_what_the_watcher_reads() -> None:
    assert tuple(EVENTS) == WATCHED


async def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.text()


async def test_an_alias_move_reaches_the_worker_through_the_webhook_and_forgeries_do_not(
    stack: LocalStack, kafka: KafkaSettings, procs: Processes, tmp_path: Path
) -> None:
    client = mlflow_client(stack)  # the session's admin: only an admin may make webhooks
    name = unique("model")
    old = register(client, name, tmp_path, seed=1)
    secret = ensure_secret_file(tmp_path / "webhook_secret")
    watcher = procs.start(
        "registry_watcher",
        service_env(
            stack, kafka,
            RS_WATCHER_MODEL_NAMES=name, RS_WATCHER_PORT=0,
            # Polling effectively off: only the webhook can make it look again within the test.
            RS_WATCHER_POLL_INTERVAL_S=3600,
            RS_WATCHER_WEBHOOK_SECRET_FILE=str(secret),
        ),
    )  # fmt: skip
    worker = procs.start("workers", worker_env(stack, kafka, name, unique("group")))
    await watcher.wait_ready()
    url = f"http://127.0.0.1:{watcher.port}{PATH}"
    hook = ensure_webhook(client, url=url, secret=secret.read_text().strip(), name=unique("hook"))
    try:
        await worker.wait_ready()
        assert await worker.metric("rs_worker_model_info", model_version=old) == 1

        new = register(client, name, tmp_path, seed=2, promote=False)
        client.set_registered_model_alias(name, "production", new)

        async def serving_new() -> bool:
            return await worker.metric("rs_worker_model_info", model_version=new) == 1

        await eventually(serving_new, timeout_s=60, what=f"the worker to serve {new}")
        assert await watcher.metric("rs_watcher_webhooks_total", outcome="accepted") == 1
        polls = await watcher.metric("rs_watcher_polls_total")

        # Forged, badly signed and stale deliveries naming the old version: refused, counted.
        key = secret.read_text().strip().encode()
        headers, body = delivery(alias_moved(name, old), secret=key, sent=int(time.time()))
        unsigned = {k: v for k, v in headers.items() if k != "X-MLflow-Signature"}
        forged, _ = delivery(alias_moved(name, old), secret=b"guessed", sent=int(time.time()))
        stale = delivery(alias_moved(name, old), secret=key, sent=int(time.time()) - 3600)
        for (sent_headers, sent_body), reason in (
            ((unsigned, body), "unsigned"),
            ((forged, body), "bad_signature"),
            (stale, "stale"),
        ):
            status, text = await post(url, sent_headers, sent_body)
            assert status == 401, text
            assert json.loads(text)["error"] == reason
            assert await watcher.metric("rs_watcher_webhooks_total", outcome=reason) == 1
        assert await watcher.metric("rs_watcher_polls_total") == polls  # none of them woke it
        assert await worker.metric("rs_worker_model_info", model_version=new) == 1
    finally:
        client.delete_webhook(hook.webhook_id)
    assert hook.webhook_id not in {h.webhook_id for h in webhooks(client)}
    assert watcher.alive()


def test_a_tag_set_on_a_version_is_a_tag_event() -> None:
    headers, body = delivery(
        {
            "entity": "model_version_tag",
            "action": "set",
            "timestamp": "2027-01-15T08:00:00+00:00",
            "data": {"name": "m", "version": "7", "key": "gates", "value": "passed"},
        }
    )
    assert check().verify(headers, body) == TagEvent("m", "7", "gates")
