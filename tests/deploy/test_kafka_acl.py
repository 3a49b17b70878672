"""Least privilege on Kafka: every principal of ``contracts.kafka_access`` on the local broker's
SASL/SCRAM listener (StandardAuthorizer), applied to this test's own topics and groups.

The matrix tries every (principal, read/write, topic) for real and compares it with the table:
an action the table allows must work, any other must be refused by the broker
(TopicAuthorizationFailedError). Then a worker and the registry watcher run authenticated, each
with its own credential, and serve requests end to end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from contracts import KafkaSettings
from contracts.kafka_access import ADMIN, PRINCIPALS, Grant, Groups, access, allowed
from deploy.acl import create_acls
from deploy.kafka_users import kafka_users, manifest
from deploy.local.launcher import LocalStack
from registry_watcher.service import Watcher
from registry_watcher.settings import Settings as WatcherSettings
from stats.settings import Settings as StatsSettings
from tests.serving import (
    REVIEWS,
    Processes,
    Traffic,
    eventually,
    mlflow_client,
    register,
    unique,
    worker_env,
)
from tests.stats.test_processor import count, make_scenario, send_predictions
from tests.statsprocess import StatsProcess, caught_up, wait_for
from training.settings import RetrainSettings
from workers.settings import SERVING_GROUP, SHADOW_GROUP

Table = dict[str, frozenset[Grant]]


@pytest.fixture
async def groups() -> Groups:
    return Groups(*(unique(f"g-{kind}") for kind in ("workers", "shadow", "stats", "retrain")))


@pytest.fixture
async def table(stack: LocalStack, kafka: KafkaSettings, groups: Groups) -> Table:
    """The design's grants on this test's topics and groups, applied to the broker."""
    grants = access(kafka, groups)
    await create_acls(kafka, grants)  # through the loopback listener: a super user
    # The controller has them; the broker's authorizer follows its metadata a moment later.
    for principal, granted in grants.items():
        topic = min(g.name for g in granted if g.resource == "TOPIC")
        await eventually(
            lambda p=principal, t=topic: describable(stack.kafka_as(p, kafka), t),
            timeout_s=30,
            what=f"the ACLs of {principal} in effect",
        )
    return grants


async def describable(kafka: KafkaSettings, topic: str) -> bool:
    admin = AIOKafkaAdminClient(**kafka.client())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return bool(described["error_code"] == 0)
    finally:
        await admin.close()


@pytest.fixture
async def seeded(kafka: KafkaSettings) -> None:
    """A record on partition 0 of every topic, so that a permitted read has something to read."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        for spec in kafka.topic_specs():
            await producer.send_and_wait(spec.name, b"seed", key=b"seed", partition=0)
    finally:
        await producer.stop()


async def can_write(kafka: KafkaSettings, topic: str) -> bool:
    return (await can_write_each(kafka, [topic]))[topic]


async def can_write_each(kafka: KafkaSettings, topics: list[str]) -> dict[str, bool]:
    """One producer tries each topic in turn: refused is the broker's
    TopicAuthorizationFailedError, and a refusal leaves the producer usable."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all", request_timeout_ms=10_000)
    await producer.start()
    done: dict[str, bool] = {}
    try:
        for topic in topics:
            try:
                await producer.send_and_wait(topic, b"attempt", key=b"k")
                done[topic] = True
            except TopicAuthorizationFailedError:
                done[topic] = False
        return done
    finally:
        await producer.stop()


async def can_read(kafka: KafkaSettings, topic: str) -> bool:
    """Reads the seed record back. Refused: the broker's TopicAuthorizationFailedError, or
    (a topic the principal may not even describe: aiokafka only logs that and retries) nothing
    within 5 s although the record is there; a permitted read takes moments."""
    consumer = AIOKafkaConsumer(
        **kafka.client(), group_id=None, enable_auto_commit=False, request_timeout_ms=5000
    )
    await consumer.start()
    try:
        async with asyncio.timeout(5):
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while not (batches := await consumer.getmany(tp, timeout_ms=500)):
                pass
            return bool(batches.get(tp))
    except (TopicAuthorizationFailedError, TimeoutError):
        return False
    finally:
        await consumer.stop()


def test_the_default_groups_are_the_services_defaults() -> None:
    groups = Groups()
    assert (groups.workers, groups.shadow_workers) == (SERVING_GROUP, SHADOW_GROUP)
    assert groups.stats == StatsSettings.model_fields["group_id"].default
    assert groups.retrain == RetrainSettings.model_fields["alerts_group_id"].default


def test_the_design_in_words() -> None:
    """The issue's sentences, checked on the table itself."""
    kafka = KafkaSettings()
    t = access(kafka)
    writers = {p for p in PRINCIPALS if allowed(t, p, "TOPIC", kafka.models_topic, "WRITE")}
    assert writers == {"release"}
    assert allowed(t, "gateway", "TOPIC", kafka.requests_topic, "WRITE")
    assert allowed(t, "gateway", "TOPIC", kafka.feedback_topic, "WRITE")
    assert allowed(t, "gateway", "TOPIC", kafka.predictions_topic, "READ")
    assert allowed(t, "worker", "TOPIC", kafka.requests_topic, "READ")
    assert allowed(t, "worker", "TOPIC", kafka.models_topic, "READ")
    assert allowed(t, "worker", "TOPIC", kafka.predictions_topic, "WRITE")
    assert allowed(t, "worker", "TOPIC", KafkaSettings.dlq(kafka.requests_topic), "WRITE")
    stats_writes = {g.name for g in t["stats"] if g.operation == "WRITE"}
    assert all(name.endswith(".dlq") for name in stats_writes)
    assert {g.operation for g in t[ADMIN]} == {
        "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"
    }  # fmt: skip
    assert allowed(t, "producer", "TOPIC", kafka.requests_topic, "WRITE")
    assert not allowed(t, "producer", "TOPIC", kafka.models_topic, "WRITE")


@pytest.mark.parametrize("principal", PRINCIPALS)
async def test_every_read_and_write_is_allowed_or_refused_as_designed(
    stack: LocalStack, kafka: KafkaSettings, table: Table, seeded: None, principal: str
) -> None:
    me = stack.kafka_as(principal, kafka)
    topics = [spec.name for spec in kafka.topic_specs()]
    reads = await asyncio.gather(*(can_read(me, t) for t in topics))
    got = {("READ", t): ok for t, ok in zip(topics, reads, strict=True)}
    got |= {("WRITE", t): ok for t, ok in (await can_write_each(me, topics)).items()}
    checks = list(got)
    expected = {(op, t): allowed(table, principal, "TOPIC", t, op) for op, t in checks}
    assert got == expected
    assert any(got.values()) or principal == ADMIN  # the credential itself works


async def test_a_worker_cannot_write_the_models_topic(
    stack: LocalStack, kafka: KafkaSettings, table: Table
) -> None:
    producer = AIOKafkaProducer(**stack.kafka_as("worker", kafka).client(), acks="all")
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(kafka.models_topic, b'{"forged": true}', key=b"m")
        # The same credential writes where it should.
        await producer.send_and_wait(kafka.predictions_topic, b"answer", key=b"r")
    finally:
        await producer.stop()


async def test_groups_are_each_services_own(
    stack: LocalStack, kafka: KafkaSettings, groups: Groups, table: Table
) -> None:
    tp = TopicPartition(kafka.requests_topic, 0)

    async def commit(principal: str, group: str) -> None:
        consumer = AIOKafkaConsumer(
            **stack.kafka_as(principal, kafka).client(), group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.commit({tp: 1})
        finally:
            await consumer.stop()

    await commit("worker", groups.workers)
    for principal, group in [("worker", groups.stats), ("training", groups.workers)]:
        with pytest.raises(GroupAuthorizationFailedError):
            await commit(principal, group)


async def test_no_credential_or_a_wrong_password_is_refused(
    stack: LocalStack, kafka: KafkaSettings, table: Table
) -> None:
    worker = stack.kafka_as("worker", kafka)
    wrong = worker.model_copy(
        update={"password_file": None, "password": SecretStr("not-the-password")}
    )
    anonymous = kafka.model_copy(update={"bootstrap_servers": stack.sasl_bootstrap_servers})

    async def write(settings: KafkaSettings) -> None:
        producer = AIOKafkaProducer(**settings.client(), request_timeout_ms=5000)
        try:
            await producer.start()
            await producer.send_and_wait(kafka.requests_topic, b"x")
        finally:
            await producer.stop()

    for settings in (wrong, anonymous):
        with pytest.raises((KafkaConnectionError, KafkaError)):
            await write(settings)
    assert await can_write(worker, kafka.predictions_topic)  # the right password works


def test_the_passwords_are_private_files(stack: LocalStack) -> None:
    for principal in PRINCIPALS:
        path: Path = stack.password_file(principal)
        assert path.stat().st_mode & 0o777 == 0o600
        assert len(path.read_text().strip()) >= 24


async def test_a_worker_and_the_watcher_serve_each_with_its_own_credential(
    stack: LocalStack,
    kafka: KafkaSettings,
    groups: Groups,
    table: Table,
    procs: Processes,
    tmp_path: Path,
) -> None:
    name = unique("model")
    env = worker_env(stack, kafka, name, groups.workers) | stack.kafka_env("worker")
    worker = procs.start("workers", env)
    version = register(mlflow_client(stack), name, tmp_path, seed=1)
    watcher_settings = WatcherSettings(
        port=0, poll_interval_s=0.5, model_names=[name], kafka=stack.kafka_as("release", kafka),
        MLFLOW_TRACKING_URI=stack.mlflow_uri,
    )  # fmt: skip
    async with Watcher(watcher_settings) as watcher:
        watching = asyncio.create_task(watcher.run())
        await worker.wait_ready()
        watcher.stop()
        await watching
    async with Traffic(stack.kafka_as("producer", kafka)) as traffic:
        ids = await traffic.send(REVIEWS)
        await traffic.wait_answered(ids)
    answers = [traffic.predictions[i][0] for i in ids]
    assert {(p.model_name, p.model_version) for p in answers} == {(name, version)}


async def test_the_stats_processor_counts_with_its_own_credential(
    stack: LocalStack,
    kafka: KafkaSettings,
    groups: Groups,
    table: Table,
    database_url: str,
    tmp_path: Path,
) -> None:
    """faust over SASL (``broker_credentials``): reads, stores, commits on its own group."""
    scenario = make_scenario(unique("s"), 40, seed=3)
    await send_predictions(kafka, scenario.predictions)
    async with StatsProcess(
        kafka=stack.kafka_as("stats", kafka),
        database_url=database_url,
        group_id=groups.stats,
        log_path=tmp_path / "stats.log",
    ) as processor:
        await processor.wait_ready()
        await wait_for(
            lambda: caught_up(kafka, groups.stats), timeout_s=90, what="offsets committed as stats"
        )
    assert await count(database_url, "SELECT count(*) FROM predictions") == 40


def test_the_kubernetes_kafka_users_are_the_table() -> None:
    """base/kafka/users.yaml is generated from the table: regenerate it after a change
    (``python -m deploy.kafka_users > deploy/k8s/base/kafka/users.yaml``)."""
    path = Path(__file__).resolve().parents[2] / "deploy/k8s/base/kafka/users.yaml"
    assert path.read_text() == manifest()
    users = {u["metadata"]["name"]: u for u in kafka_users()}
    assert set(users) == set(PRINCIPALS)
    for principal, grants in access(KafkaSettings()).items():
        acls = users[principal]["spec"]["authorization"]["acls"]
        assert len(acls) == len(grants)
        assert {a["resource"]["name"] for a in acls} == {g.name for g in grants}
