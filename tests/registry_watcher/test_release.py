"""The watcher as the release component, on the real MLflow and Kafka: it ships only versions
that passed their gates (or carry an override) and whose bundle checks out, says why on the
alerts topic and in a registry tag when it will not, and rolls back a version on probation that
an alert names, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import (
    Alert,
    AlertStatus,
    ChangeReason,
    KafkaSettings,
    WorkerState,
    WorkerStatus,
    decode,
    encode,
)
from deploy.local.launcher import LocalStack
from export.lineage import lineage
from export.registry import promote
from registry_watcher.settings import Settings
from tests.registry_watcher.test_watcher import events_are, running, topic_events
from tests.serving import corrupt, eventually, mlflow_client, register, unique


async def alerts_on(kafka: KafkaSettings) -> list[Alert]:
    consumer = AIOKafkaConsumer(
        kafka.alerts_topic,
        **kafka.client(),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=2000)
        return [decode(r.value, Alert) for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()


async def fire(kafka: KafkaSettings, name: str, **labels: str) -> None:
    """An alert as the gateway's Alertmanager webhook publishes it."""
    alert = Alert(
        name=name,
        status=AlertStatus.FIRING,
        severity="critical",
        labels=labels,
        summary=f"{name} in a test",
        starts_at=datetime.now(UTC),
        fingerprint=unique("fp"),
    )
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(kafka.alerts_topic, encode(alert), key=b"fp")
    finally:
        await producer.stop()


def settings_for(kafka: KafkaSettings, stack: LocalStack, name: str) -> Settings:
    return Settings(
        port=0, poll_interval_s=0.3, model_names=[name], kafka=kafka,
        MLFLOW_TRACKING_URI=stack.mlflow_uri,
    )  # fmt: skip


async def test_only_versions_that_passed_ship_and_an_override_is_explicit(
    stack: LocalStack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    client = mlflow_client(stack)
    name = unique("model")
    v1 = register(client, name, tmp_path, seed=1)
    async with running(settings_for(kafka, stack, name)) as watcher:
        await eventually(events_are(kafka, [(v1, ChangeReason.PROMOTED)]), timeout_s=30,
                         what="v1 shipped")  # fmt: skip

        # Moved by hand (as in the MLflow UI) to a version whose gates failed: not shipped.
        v2 = register(client, name, tmp_path, seed=2, promote=False, gates_pass=False)
        client.set_registered_model_alias(name, "production", v2)

        def refusal(version: str) -> str:
            return str(client.get_model_version(name, version).tags.get("release.refused", ""))

        await eventually(lambda: bool(refusal(v2)), timeout_s=30, what="v2 refused")
        assert "did not pass its gates: accuracy_floor" in refusal(v2)
        alerts = [a for a in await alerts_on(kafka) if a.name == "ReleaseRefused"]
        assert [(a.status, a.labels["model_version"]) for a in alerts] == [(AlertStatus.FIRING, v2)]
        assert "the fleet stays on v" + v1 in alerts[0].summary
        assert [e.version for e in await topic_events(kafka)] == [v1]

        # The admin override ships it, and says who and why.
        promote(client, name, v2, alias="production", by="ana", reason="approved", override=True)
        await eventually(
            events_are(kafka, [(v1, ChangeReason.PROMOTED), (v2, ChangeReason.ALIAS_MOVED)]),
            timeout_s=30,
            what="v2 shipped with the override",
        )
        history = lineage(client, name, v2)["history"]
        assert (history["override.by"], history["override.reason"]) == ("ana", "approved")
        assert history["previous_production"] == v1
        statuses = [a.status for a in await alerts_on(kafka) if a.name == "ReleaseRefused"]
        assert statuses == [AlertStatus.FIRING, AlertStatus.RESOLVED]

        # Gates passed, but the bundle is not what was registered: the artifact check refuses.
        v3 = register(client, name, tmp_path, seed=3, promote=False)
        corrupt(client, name, v3)
        client.set_registered_model_alias(name, "production", v3)
        await eventually(lambda: bool(refusal(v3)), timeout_s=30, what="v3 refused")
        assert "sha256" in refusal(v3)
        assert [e.version for e in await topic_events(kafka)] == [v1, v2]
        refused = watcher.metrics.registry.get_sample_value(
            "rs_watcher_releases_refused_total", {"model_name": name}
        )
        assert refused == 2


async def test_an_alert_during_probation_rolls_back_once_and_never_flaps(
    stack: LocalStack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    client = mlflow_client(stack)
    name = unique("model")
    v1 = register(client, name, tmp_path, seed=1)
    async with running(settings_for(kafka, stack, name)) as watcher:
        await eventually(events_are(kafka, [(v1, ChangeReason.PROMOTED)]), timeout_s=30,
                         what="v1 shipped")  # fmt: skip
        v2 = register(client, name, tmp_path, seed=2, promote=False)
        client.set_registered_model_alias(name, "production", v2)
        shipped = [(v1, ChangeReason.PROMOTED), (v2, ChangeReason.ALIAS_MOVED)]
        await eventually(events_are(kafka, shipped), timeout_s=30, what="v2 shipped")

        # Alerts that do not concern v2, or do not roll back: nothing happens.
        await fire(kafka, "LiveAccuracyDrop", model_version=v1)
        await fire(kafka, "DataDrift", model_version=v2, feature="words")
        # The one that does: v2 goes back to v1, announced as a rollback.
        await fire(kafka, "LiveAccuracyDrop", model_version=v2)
        rolled_back = [*shipped, (v1, ChangeReason.ROLLED_BACK)]
        await eventually(events_are(kafka, rolled_back), timeout_s=30, what="the rollback")

        # The rollback moves the alias, then tags both versions: the event (sent at once,
        # its release tags after it) may come first.
        def rollback_tagged() -> bool:  # restored_at on v1 comes after every tag on v2
            return "restored_at" in client.get_model_version(name, v1).tags

        await eventually(rollback_tagged, timeout_s=30, what="the rollback's tags")
        tags = client.get_model_version(name, v2).tags
        assert tags["rollback.automatic"] == "true"
        assert tags["rolled_back_reason"] == (
            "alert LiveAccuracyDrop during probation: LiveAccuracyDrop in a test"
        )

        # The alert and the event travel on two topics: either may be read first (the restored
        # version's bundle was checked already, so its event can beat the alert).
        async def rolled_back_said() -> list[tuple[str, str]]:
            said = [a for a in await alerts_on(kafka) if a.name == "ModelRolledBack"]
            return [(a.labels["model_version"], a.labels["restored_version"]) for a in said]

        async def said_once() -> bool:
            return bool(await rolled_back_said())

        await eventually(said_once, timeout_s=30, what="ModelRolledBack said")
        assert await rolled_back_said() == [(v2, v1)]

        # No flapping: the restored version is not on probation, and v2 moved back by hand
        # is refused (it was rolled back) until an override newer than the rollback.
        await fire(kafka, "LiveAccuracyDrop", model_version=v1)
        client.set_registered_model_alias(name, "production", v2)
        await eventually(
            lambda: "was rolled back" in client.get_model_version(name, v2).tags.get(
                "release.refused", ""),
            timeout_s=30, what="v2 refused after its rollback",
        )  # fmt: skip
        assert [(e.version, e.reason) for e in await topic_events(kafka)] == rolled_back
        rollbacks = watcher.metrics.registry.get_sample_value(
            "rs_watcher_rollbacks_total", {"model_name": name, "alert": "LiveAccuracyDrop"}
        )
        assert rollbacks == 1


async def report(kafka: KafkaSettings, status: WorkerStatus) -> None:
    """A worker's report on the fleet topic, as workers.status publishes it."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka.fleet_topic, encode(status), key=status.worker_id.encode()
        )
    finally:
        await producer.stop()


async def test_a_fleet_that_does_not_follow_within_the_deadline_rolls_the_version_back(
    stack: LocalStack, kafka: KafkaSettings, tmp_path: Path
) -> None:
    client = mlflow_client(stack)
    name = unique("model")
    v1 = register(client, name, tmp_path, seed=1)
    settings = settings_for(kafka, stack, name).model_copy(update={"ack_deadline_s": 2.0})

    def stuck_on(version: str) -> WorkerStatus:
        return WorkerStatus(
            worker_id="w-stuck", model_name=name, alias="production", state=WorkerState.FAILED,
            version=version, wanted_version=str(int(version) + 1), load_attempts=3,
            error="download: ConnectionError", heartbeat_s=30, started_at=datetime.now(UTC),
        )  # fmt: skip

    async with running(settings):
        await eventually(events_are(kafka, [(v1, ChangeReason.PROMOTED)]), timeout_s=30,
                         what="v1 shipped")  # fmt: skip
        v2 = register(client, name, tmp_path, seed=2, promote=False)
        client.set_registered_model_alias(name, "production", v2)
        shipped = [(v1, ChangeReason.PROMOTED), (v2, ChangeReason.ALIAS_MOVED)]
        await eventually(events_are(kafka, shipped), timeout_s=30, what="v2 shipped")
        await report(kafka, stuck_on(v1))  # a live worker that cannot load v2

        rolled_back = [*shipped, (v1, ChangeReason.ROLLED_BACK)]
        await eventually(events_are(kafka, rolled_back), timeout_s=30, what="the rollback")
        said = [a for a in await alerts_on(kafka) if a.name == "FleetNotAcknowledging"]
        assert [(a.labels["model_version"], a.description) for a in said] == [
            (v2, f"not on v{v2}: w-stuck (GET /v1/admin/fleet says why)")
        ]
        reason = client.get_model_version(name, v2).tags["rolled_back_reason"]
        assert reason.startswith("alert FleetNotAcknowledging during probation: 1 live worker")
