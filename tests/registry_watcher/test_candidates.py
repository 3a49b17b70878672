"""The next version is checked and announced before the alias names it, so that a move only
switches; the release tags follow the event, and a watcher that stopped in between writes them
when it starts again."""

from __future__ import annotations

from pathlib import Path

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from contracts import ChangeReason, KafkaSettings
from deploy.local.launcher import LocalStack
from inference.release import stamp
from registry_watcher.candidates import candidate
from registry_watcher.service import Watcher
from tests.registry_watcher.test_release import settings_for
from tests.registry_watcher.test_watcher import events_are, running, topic_events
from tests.serving import eventually, register, serving_and_next

PASSED = {"gates": "passed", "bundle_sha256": "a" * 64}
FAILED = {"gates": "failed", "gates.failed": "accuracy_floor", "bundle_sha256": "b" * 64}
NEXT = "production~candidate"


def version(number: str, **tags: str) -> ModelVersion:
    return ModelVersion(
        "m",
        number,
        0,
        tags=[ModelVersionTag(k, v) for k, v in tags.items()],  # type: ignore[no-untyped-call]
    )


def test_the_next_version_is_the_newest_that_may_ship_above_the_one_serving() -> None:
    versions = [version("1", **PASSED), version("2", **PASSED), version("3", **FAILED)]
    chosen = candidate(versions, serving="1")
    assert chosen is not None
    assert chosen.version == "2"
    assert candidate(versions, serving="2") is None  # nothing newer may ship
    newest = candidate([version("4", **PASSED), *versions], serving="2")
    assert newest is not None
    assert newest.version == "4"
    first = candidate(versions, serving=None)
    assert first is not None
    assert first.version == "2"
    rolled_back = version("5", **PASSED, rolled_back_at="2026-12-01T00:00:00+00:00")
    assert candidate([rolled_back, *versions], serving="1") == versions[1]
    no_bundle = version("6", gates="passed")
    assert candidate([no_bundle, *versions], serving="1") == versions[1]


def count(watcher: Watcher, name: str, labels: dict[str, str]) -> float:
    return watcher.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_the_next_version_is_checked_ahead_and_its_tags_follow_the_event(
    stack: LocalStack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    client, name, v1, v2 = serving_and_next(stack, tmp_path)
    register(client, name, tmp_path, seed=3, promote=False, gates_pass=False)  # never next
    settings = settings_for(kafka, stack, name)
    checks = "rs_watcher_bundle_checks_total"

    async with running(settings) as watcher:
        await eventually(events_are(kafka, [(v1, ChangeReason.PROMOTED)]), timeout_s=30,
                         what="v1 shipped")  # fmt: skip

        async def announced() -> bool:
            return [e.version for e in await topic_events(kafka, alias=NEXT)] == [v2]

        await eventually(announced, timeout_s=30, what="v2 announced as the next version")
        checked = count(watcher, checks, {"verdict": "fit"})
        assert checked == 2  # v1 as it shipped, v2 before it was announced; v3 never

        client.set_registered_model_alias(name, "production", v2)
        shipped = [(v1, ChangeReason.PROMOTED), (v2, ChangeReason.ALIAS_MOVED)]
        await eventually(events_are(kafka, shipped), timeout_s=30, what="v2 shipped")
        assert count(watcher, checks, {"verdict": "fit"}) == checked  # not downloaded again

        def tags() -> dict[str, str]:
            return dict(client.get_model_version(name, v2).tags)

        await eventually(lambda: "shipped_at" in tags(), timeout_s=30, what="v2's release tags")
        assert tags()["previous_production"] == v1
        assert [e.version for e in await topic_events(kafka, alias=NEXT)] == [v2]

    # The watcher stopped between an event and its tags: the next one writes them, as shipped
    # when the event was, and announces nothing new.
    client.delete_model_version_tag(name, v2, "shipped_at")
    async with running(settings):
        await eventually(lambda: "shipped_at" in tags(), timeout_s=30, what="the tags repaired")
        (event,) = [e for e in await topic_events(kafka) if e.version == v2]
        assert stamp(tags()["shipped_at"]) == event.changed_at.replace(microsecond=0)
    assert [(e.version, e.reason) for e in await topic_events(kafka)] == shipped
