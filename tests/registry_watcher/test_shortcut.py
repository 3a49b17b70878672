"""The webhook's shortcut: a signed move to the next version checked ahead ships before the
registry lookup, and the lookup right after confirms it (its release tags are written then) or
corrects it; a move to any other version, and a delivery older than one heard, take the lookup.

The stack tests post signed deliveries to a watcher that otherwise looks only once an hour,
with the real registry saying where the alias is: so which path a move took is certain."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import aiohttp
from mlflow import MlflowClient

from contracts import ChangeReason, KafkaSettings, ModelChanged
from deploy.local.launcher import LocalStack
from registry_watcher.service import Watcher
from registry_watcher.settings import Settings
from registry_watcher.shortcut import Hint, Moves, ahead
from registry_watcher.webhook import PATH, AliasEvent
from tests.registry_watcher.test_candidates import NEXT, count
from tests.registry_watcher.test_watcher import events_are, running, topic_events
from tests.registry_watcher.test_webhook import SECRET, delivery
from tests.serving import eventually, serving_and_next

T0 = datetime(2027, 1, 15, 8, tzinfo=UTC)
SHA = "a" * 64


def event(version: str) -> ModelChanged:
    return ModelChanged(
        model_name="m", version=version, alias="production", artifact_uri="s3://b/x", sha256=SHA
    )


def moved(version: str | None, seconds: int) -> AliasEvent:
    return AliasEvent("m", "production", version, T0 + timedelta(seconds=seconds))


def test_the_newest_delivery_per_model_is_the_hint_and_an_older_one_none() -> None:
    moves = Moves()
    assert moves.heard(moved("3", 2), heard_at=0.0)
    assert not moves.heard(moved("2", 1), heard_at=0.0)  # built before the one heard
    assert not moves.heard(moved("2", 2), heard_at=0.0)
    assert not moves.heard(AliasEvent("m", "production", "4", None), heard_at=0.0)
    assert [h.version for h in moves.take().values()] == ["3"]
    assert moves.take() == {}


def test_only_a_move_to_the_next_version_newer_than_the_one_shipped_is_a_shortcut() -> None:
    def hint(version: str | None) -> Hint:
        return Hint(version, T0, 0.0)

    shipped = ahead(hint("3"), event("3"), event("2"))
    assert shipped is not None
    assert (shipped.version, shipped.alias) == ("3", "production")
    assert ahead(hint("3"), event("3"), None) is not None  # the first version served
    assert ahead(hint("4"), event("3"), event("2")) is None  # not the one checked ahead
    assert ahead(hint("3"), None, event("2")) is None  # nothing checked ahead
    assert ahead(hint(None), event("3"), event("2")) is None  # the alias deleted
    assert ahead(hint("3"), event("3"), event("3")) is None  # shipped already
    assert ahead(hint("3"), event("3"), event("5")) is None  # a move back: the lookup's


class Hook:
    """Signed deliveries posted to an in-process watcher, each built a second after the last."""

    def __init__(self, watcher: Watcher, name: str) -> None:
        self.url = f"http://127.0.0.1:{watcher.health.port}{PATH}"
        self.name = name
        self.sent = datetime.now(UTC)

    async def moved(self, version: str | None, *, sent: datetime | None = None) -> None:
        if sent is None:
            self.sent += timedelta(seconds=1)
        payload: dict[str, object] = {
            "entity": "model_version_alias",
            "action": "created" if version else "deleted",
            "timestamp": (sent or self.sent).isoformat(),
            "data": {"name": self.name, "alias": "production", "version": version},
        }
        headers, body = delivery(payload, sent=int(time.time()))
        async with aiohttp.ClientSession() as http:
            answer = await http.post(self.url, data=body, headers=headers)
            assert answer.status == 202, await answer.text()


def settings(kafka: KafkaSettings, stack: LocalStack, name: str, secret: Path) -> Settings:
    secret.write_text(SECRET.decode())
    return Settings(
        port=0, poll_interval_s=3600, model_names=[name], kafka=kafka,
        webhook_secret_file=secret, MLFLOW_TRACKING_URI=stack.mlflow_uri,
    )  # fmt: skip


def shortcuts(watcher: Watcher, outcome: str) -> float:
    return count(watcher, "rs_watcher_shortcuts_total", {"outcome": outcome})


async def next_is(kafka: KafkaSettings, version: str) -> None:
    async def announced() -> bool:
        return [e.version for e in await topic_events(kafka, alias=NEXT)][-1:] == [version]

    await eventually(announced, timeout_s=30, what=f"v{version} announced as the next version")


def tags_of(client: MlflowClient, name: str, version: str) -> Callable[[], dict[str, str]]:
    return lambda: dict(client.get_model_version(name, version).tags)


def counted(watcher: Watcher, outcome: str, expected: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return shortcuts(watcher, outcome) == expected

    return check


class Ready(NamedTuple):
    client: MlflowClient
    name: str
    v1: str
    v2: str
    watcher: Watcher
    hook: Hook


@asynccontextmanager
async def next_checked_ahead(
    stack: LocalStack, kafka: KafkaSettings, tmp_path: Path
) -> AsyncIterator[Ready]:
    """A watcher shipping v1 and announcing v2 as the next version, and its webhook."""
    client, name, v1, v2 = serving_and_next(stack, tmp_path)
    async with running(settings(kafka, stack, name, tmp_path / "secret")) as watcher:
        await eventually(events_are(kafka, [(v1, ChangeReason.PROMOTED)]), timeout_s=30,
                         what="v1 shipped")  # fmt: skip
        await next_is(kafka, v2)
        yield Ready(client, name, v1, v2, watcher, Hook(watcher, name))


async def test_a_move_to_the_version_checked_ahead_ships_before_the_lookup_and_is_confirmed(
    stack: LocalStack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    ready = next_checked_ahead(stack, kafka, tmp_path)
    async with ready as (client, name, v1, v2, watcher, hook):
        client.set_registered_model_alias(name, "production", v2)
        await hook.moved(v2)
        shipped = [(v1, ChangeReason.PROMOTED), (v2, ChangeReason.ALIAS_MOVED)]
        await eventually(events_are(kafka, shipped), timeout_s=30, what="v2 shipped")
        await eventually(counted(watcher, "confirmed", 1), timeout_s=30, what="v2 confirmed")
        assert shortcuts(watcher, "shipped") == 1
        tags = tags_of(client, name, v2)
        await eventually(lambda: "shipped_at" in tags(), timeout_s=30, what="v2's release tags")
        assert tags()["previous_production"] == v1

        # A move back is no shortcut: the lookup decides, as it always did.
        client.set_registered_model_alias(name, "production", v1)
        await hook.moved(v1)
        shipped.append((v1, ChangeReason.ROLLED_BACK))
        await eventually(events_are(kafka, shipped), timeout_s=30, what="v1 shipped again")
        assert (shortcuts(watcher, "shipped"), shortcuts(watcher, "looked_up")) == (1, 1)
        assert shortcuts(watcher, "corrected") == 0


async def test_the_registry_corrects_a_move_it_does_not_confirm(
    stack: LocalStack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    ready = next_checked_ahead(stack, kafka, tmp_path)
    async with ready as (client, name, v1, v2, watcher, hook):
        shipped = [(v1, ChangeReason.PROMOTED)]
        # The alias went to v2 and back to v1; only the first delivery came (so far): v2
        # ships on its word, the registry says v1, and v1 is announced again.
        await hook.moved(v2)
        shipped += [(v2, ChangeReason.ALIAS_MOVED), (v1, ChangeReason.ROLLED_BACK)]
        await eventually(events_are(kafka, shipped), timeout_s=30, what="back on v1")
        await eventually(counted(watcher, "corrected", 1), timeout_s=30, what="corrected")
        assert "shipped_at" not in tags_of(client, name, v2)()  # never confirmed: no tags

        # Delivered out of order: the later move's delivery first (no shortcut: v1 is not the
        # next version), then the earlier one's, which is no hint now: nothing ships.
        later = hook.sent + timedelta(seconds=2)
        await hook.moved(v1, sent=later)
        await hook.moved(v2, sent=later - timedelta(seconds=1))
        await eventually(counted(watcher, "looked_up", 1), timeout_s=30, what="a lookup")
        assert shortcuts(watcher, "out_of_order") == 1
        hook.sent = later
        # The alias deleted after a move to v2: v2 ships on the webhook's word, the registry
        # names nothing, and what served before is announced again.
        client.delete_registered_model_alias(name, "production")
        await hook.moved(v2)
        shipped += [(v2, ChangeReason.ALIAS_MOVED), (v1, ChangeReason.ROLLED_BACK)]
        await eventually(events_are(kafka, shipped), timeout_s=30, what="back on v1 again")
        await eventually(counted(watcher, "corrected", 2), timeout_s=30, what="corrected")
        assert (shortcuts(watcher, "shipped"), shortcuts(watcher, "looked_up")) == (2, 1)
    assert [(e.version, e.reason) for e in await topic_events(kafka)] == shipped
