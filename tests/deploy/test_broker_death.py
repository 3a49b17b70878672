"""Three brokers, one killed under load: every request answered, every prediction counted once.

A stack of its own (``RS_STACK_KAFKA_BROKERS=3``, every port its own), two workers and the
stats processor on topics with three replicas and ``min.insync.replicas`` 2. The broker that
leads the most partitions is SIGKILLed while requests keep coming; it is started again once the
load has stopped, and rejoins every partition's in-sync replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka.errors import KafkaError

from contracts import KafkaSettings
from deploy.local.kafka_nodes import KafkaNodes, busiest_leader, in_sync
from deploy.local.launcher import LocalStack
from deploy.topics import ensure_topics
from tests.serving import (
    Load,
    Processes,
    Traffic,
    eventually,
    mlflow_client,
    register,
    unique,
    worker_env,
)
from tests.statsprocess import StatsProcess, caught_up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
async def cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[LocalStack, KafkaNodes]]:
    """Three KRaft nodes, PostgreSQL and MLflow on ports of their own; signed in to that MLflow."""
    own = LocalStack(state_dir=tmp_path / "state", kafka_brokers=3)
    nodes = KafkaNodes(own)
    try:
        await asyncio.to_thread(own.start, 420)  # three JVMs on two busy cores: slow
        for key, value in own.mlflow_credentials(own.mlflow_user).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", own.mlflow_uri)
        yield own, nodes
    finally:
        nodes.close()
        await asyncio.to_thread(own.stop)


async def test_a_broker_killed_under_load_loses_nothing_and_counts_nothing_twice(
    cluster: tuple[LocalStack, KafkaNodes], tmp_path: Path
) -> None:
    own, nodes = cluster
    kafka = KafkaSettings().prefixed(
        unique("t"),
        bootstrap_servers=own.bootstrap_servers,
        requests_partitions=3,
        predictions_partitions=3,
        feedback_partitions=2,
    )
    await ensure_topics(kafka)
    assert await _replicated(kafka)
    name = unique("model")
    version = register(mlflow_client(own), name, tmp_path, seed=11)

    with Processes(tmp_path) as procs:
        env = worker_env(own, kafka, name, unique("group"))
        workers = [procs.start("workers", env) for _ in range(2)]
        stats_group = unique("stats")
        async with (
            StatsProcess(
                kafka=kafka,
                database_url=own.database_url,
                group_id=stats_group,
                log_path=tmp_path / "stats.log",
            ) as stats,
            Traffic(kafka) as traffic,
        ):
            await asyncio.gather(*(w.wait_ready(180) for w in workers), stats.wait_ready(180))
            load = Load(traffic, per_tick=4, tick_s=0.1).start()
            try:
                await eventually(lambda: len(load.sent) >= 20, timeout_s=60, what="20 sent")
                await traffic.wait_answered(load.sent[:20], timeout_s=120)
                victim = await busiest_leader(
                    kafka, [kafka.requests_topic, kafka.predictions_topic]
                )
                await asyncio.to_thread(nodes.kill, victim)
                killed_at = len(load.sent)
                # The load goes on; the survivors take over the partitions the victim led.
                await eventually(
                    lambda: (
                        len(load.sent) > killed_at + 200
                        and not traffic.missing(load.sent[killed_at : killed_at + 200])
                    ),
                    timeout_s=180,
                    what="answers to 200 requests sent after the kill",
                )
            finally:
                sent = await load.stop()
            await asyncio.to_thread(nodes.restart, victim)
            await traffic.wait_answered(sent, timeout_s=120)
            await eventually(
                lambda: caught_up(kafka, stats_group),
                timeout_s=180,
                what="the stats processor to commit every prediction",
            )
            counted = await _counted(own.database_url, name)
            assert all(w.alive() for w in workers)  # none crashed on the way

        await eventually(
            lambda: _replicated(kafka),
            timeout_s=180,
            what=f"node {victim} back in every partition's in-sync replicas",
        )

    print(f"killed node {victim} after {killed_at} of {len(sent)} requests")
    assert counted.rows == len(set(counted.ids)) == len(set(sent)) == len(sent)
    assert set(counted.ids) == set(sent)
    assert set(counted.windows.values()) == {len(sent)}, counted.windows
    assert {p.model_version for ps in traffic.predictions.values() for p in ps} == {version}


async def _replicated(kafka: KafkaSettings) -> bool:
    topics = [kafka.requests_topic, kafka.predictions_topic, kafka.feedback_topic]
    try:
        found = await asyncio.gather(*(in_sync(kafka, topic) for topic in topics))
    except KafkaError:  # the admin client asked the node still starting: not yet
        return False
    return all(isr == {1, 2, 3} for partitions in found for isr in partitions.values())


@dataclass(frozen=True)
class Counted:
    ids: list[str]  # one per stored prediction
    windows: dict[str, int]  # granularity -> predictions counted in its windows

    @property
    def rows(self) -> int:
        return len(self.ids)


async def _counted(database_url: str, model_name: str) -> Counted:
    """The predictions stored for ``model_name`` and their sum in every window granularity."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT request_id FROM predictions WHERE model_name = $1", model_name
        )
        windows = await conn.fetch(
            "SELECT granularity, sum(predictions) AS n FROM window_stats "
            "WHERE model_name = $1 GROUP BY granularity",
            model_name,
        )
    finally:
        await conn.close()
    return Counted(
        [r["request_id"] for r in rows], {w["granularity"]: int(w["n"]) for w in windows}
    )
