"""Inference workers on the real broker and registry, run as ``python -m workers``."""

from __future__ import annotations

import asyncio
import base64
import signal
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from mlflow import MlflowClient

from contracts import KafkaSettings
from deploy.local.launcher import LocalStack
from registry_watcher.service import Watcher
from registry_watcher.settings import Settings as WatcherSettings
from tests.serving import (
    REVIEWS,
    Load,
    Processes,
    Traffic,
    eventually,
    mlflow_client,
    register,
    unique,
    worker_env,
)


@pytest.fixture
def client(stack: LocalStack) -> MlflowClient:
    return mlflow_client(stack)


async def test_worker_waits_for_a_model_then_answers_and_dead_letters_bad_input(
    stack: LocalStack,
    kafka: KafkaSettings,
    procs: Processes,
    traffic: Traffic,
    client: MlflowClient,
    tmp_path: Path,
) -> None:
    name = unique("model")
    worker = procs.start("workers", worker_env(stack, kafka, name, unique("group")))

    # No model anywhere: alive, not ready, and it says why.
    assert (await worker.get("/healthz")).status == 200
    not_ready = await worker.get("/readyz")
    assert not_ready.status == 503
    assert "no model" in not_ready.json()["reason"]
    await eventually(
        lambda: "not ready: no model" in worker.log(), timeout_s=60, what="the not-ready log"
    )
    assert worker.alive()

    # Promote a version, with the registry watcher announcing it: the worker becomes ready.
    version = register(client, name, tmp_path, seed=1)
    watcher_settings = WatcherSettings(
        port=0, poll_interval_s=0.5, model_names=[name], kafka=kafka,
        MLFLOW_TRACKING_URI=stack.mlflow_uri,
    )  # fmt: skip
    async with Watcher(watcher_settings) as watcher:
        watching = asyncio.create_task(watcher.run())
        await worker.wait_ready()
        watcher.stop()
        await watching

    ids = await traffic.send(REVIEWS * 4)
    await traffic.wait_answered(ids)
    answers = [traffic.predictions[i][0] for i in ids]
    assert {(p.model_name, p.model_version) for p in answers} == {(name, version)}
    assert len({p.worker_id for p in answers}) == 1
    assert all(p.label == int(p.probability >= 0.5) for p in answers)
    assert all(p.reply_to == "t" and p.timings.batch_size >= 1 for p in answers)
    assert await worker.metric("rs_worker_model_info", model_version=version) == 1

    # Poison, then good requests behind it on the same partition: the good ones are answered,
    # the poison lands in the DLQ with its reason and its original bytes, the worker lives on.
    poison = {
        b"\xff\xfe\x00 not utf-8": "not UTF-8",
        b"{this is not json": "not JSON",
        b'{"schema_version": 1, "text": "no source"}': "source",
        b'{"schema_version": 1, "text": "   ", "source": "rest"}': "text is empty",
        b'{"schema_version": 1, "text": "' + b"x" * 20_001 + b'", "source": "rest"}': "limit",
    }
    for value in poison:
        await traffic.send_raw(value, key=b"same-partition")
    after = await traffic.send(REVIEWS, key=b"same-partition")
    await traffic.wait_answered(after)
    await eventually(
        lambda: len(traffic.dead_letters) == len(poison), timeout_s=30, what="dead letters"
    )
    for letter in traffic.dead_letters:
        original = base64.b64decode(letter.value)
        assert poison[original] in letter.reason, letter.reason
        assert letter.topic == kafka.requests_topic
        assert letter.service.startswith("workers/")
    # The two that could be decoded were also answered with an error reply, at once.
    assert sorted(f.reason for f in traffic.failures) == [
        "text has 20001 characters, the limit is 20000",
        "text is empty (only whitespace)",
    ]
    assert {f.reply_to for f in traffic.failures} == {None}
    assert worker.alive()
    assert await worker.metric("rs_worker_dead_letters_total") == len(poison)
    assert await worker.metric("rs_worker_batches_total") >= 1
    assert (await worker.get("/readyz")).status == 200


async def test_sigterm_drains_commits_and_leaves_the_group(
    stack: LocalStack,
    kafka: KafkaSettings,
    procs: Processes,
    traffic: Traffic,
    client: MlflowClient,
    tmp_path: Path,
) -> None:
    name, group = unique("model"), unique("group")
    register(client, name, tmp_path, seed=2)
    # A long session timeout: an empty group right after the exit proves the worker left it.
    # A long commit interval under steady load: whatever is committed, the stop committed.
    env = worker_env(
        stack,
        kafka,
        name,
        group,
        RS_WORKER_SESSION_TIMEOUT_MS=45_000,
        RS_WORKER_COMMIT_INTERVAL_MS=600_000,
    )
    worker = procs.start("workers", env)
    await worker.wait_ready()

    async with Load(traffic, per_tick=10, tick_s=0.02):
        await eventually(lambda: len(traffic.predictions) >= 100, timeout_s=60, what="answers")
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit(timeout_s=30) == 0
    assert "left consumer group" in worker.log()

    admin = AIOKafkaAdminClient(**kafka.client())
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    _error, _group, state, _type, _protocol, members, *_ = response.groups[0]
    assert (state, members) == ("Empty", [])

    # Everything below a committed offset was answered before the commit: nothing skipped.
    assert committed, "the worker committed nothing"
    for tp, offset in committed.items():
        below = [
            rid
            for (p, o), rid in traffic.offsets.items()
            if p == tp.partition and o < offset.offset
        ]
        assert not traffic.missing(below), f"partition {tp.partition}: committed unanswered"


async def test_two_workers_share_the_load_and_a_sigkill_loses_nothing(
    stack: LocalStack,
    kafka: KafkaSettings,
    procs: Processes,
    traffic: Traffic,
    client: MlflowClient,
    tmp_path: Path,
) -> None:
    name, group = unique("model"), unique("group")
    version = register(client, name, tmp_path, seed=3)
    env = worker_env(stack, kafka, name, group)
    first, second = procs.start("workers", env), procs.start("workers", env)
    await first.wait_ready()
    await second.wait_ready()

    async def split() -> bool:
        shares = [await w.metric("rs_worker_assigned_partitions") for w in (first, second)]
        return sum(shares) == kafka.requests_partitions and min(shares) > 0

    await eventually(split, timeout_s=60, what="both workers to own partitions")

    load = Load(traffic, per_tick=5, tick_s=0.05).start()
    try:
        await eventually(
            lambda: len({p[0].worker_id for p in traffic.predictions.values()}) == 2,
            timeout_s=60,
            what="answers from both workers",
        )
        first.signal(signal.SIGKILL)  # mid-stream: its uncommitted batch is lost with it
        assert await first.wait_exit(timeout_s=10) == -signal.SIGKILL
        killed_at = len(load.sent)
        # The survivor takes over the dead worker's partitions after its session times out.
        await eventually(
            lambda: (
                not traffic.missing(load.sent[killed_at : killed_at + 100])
                and len(load.sent) > killed_at + 100
            ),
            timeout_s=90,
            what="the survivor to answer requests sent after the kill",
        )
    finally:
        sent = await load.stop()
    await traffic.wait_answered(sent, timeout_s=60)
    workers = Counter(traffic.predictions[i][-1].worker_id for i in sent)
    assert len(workers) == 2, workers
    assert {p.model_version for ps in traffic.predictions.values() for p in ps} == {version}
    assert second.alive()
