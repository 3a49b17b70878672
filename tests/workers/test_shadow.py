"""A challenger in shadow, end to end on the real stack: the registry watcher announces both
aliases, a serving worker and a shadow worker (``python -m workers``, one following
``challenger``) answer the same labelled replay, and the stats processor (``python -m stats``)
stores both. The read model then shows agreement and live accuracy side by side, while every
answer a client could get names the production version only."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import (
    DeadLetter,
    KafkaSettings,
    Prediction,
    RequestFailed,
    ReviewRequest,
    Source,
    decode,
    decode_reply,
    encode,
)
from deploy.local.launcher import LocalStack
from gateway.db import PostgresStats
from gateway.schemas import ShadowQuery
from registry_watcher.service import Watcher
from registry_watcher.settings import Settings as WatcherSettings
from runtime.database import DatabaseSettings
from tests.serving import (
    Processes,
    Traffic,
    eventually,
    mlflow_client,
    register,
    unique,
    worker_env,
)
from tests.statsprocess import StatsProcess

REVIEWS = 80
GOOD = ["wonderful", "friendly", "delicious", "clean", "quick", "kind", "great", "lovely"]
BAD = ["rude", "cold", "dirty", "slow", "bland", "broken", "awful", "overpriced"]
THINGS = ["food", "staff", "room", "service", "museum", "doctor", "repair", "coffee"]


def labelled_replay(n: int) -> list[ReviewRequest]:
    """Reviews whose label the replay knows (user_label), as a feedback stream would."""
    rng = random.Random(15)
    requests = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = GOOD if label else BAD
        text = f"The {rng.choice(THINGS)} was {rng.choice(words)} and {rng.choice(words)}."
        requests.append(
            ReviewRequest(text=text, source=Source.REPLAY, user_label=label, reply_to="t")
        )
    return requests


async def read_all(kafka: KafkaSettings, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, **kafka.client(), group_id=None,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        values: list[bytes] = []
        while batch := await consumer.getmany(timeout_ms=1000):
            values += [m.value for messages in batch.values() for m in messages]
        return values
    finally:
        await consumer.stop()


async def test_a_challenger_in_shadow_under_a_labelled_replay(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    procs: Processes,
    traffic: Traffic,
    tmp_path: Path,
) -> None:
    client = mlflow_client(stack)
    name = unique("model")
    v1 = register(client, name, tmp_path, seed=1)
    v2 = register(client, name, tmp_path, seed=2, promote=False)
    client.set_registered_model_alias(name, "challenger", v2)
    serving = procs.start(
        "workers", worker_env(stack, kafka, name, unique("serving"), RS_WORKER_ID="serving-1")
    )
    # The challenger alias alone makes it a shadow worker (its role by default).
    shadow = procs.start(
        "workers",
        worker_env(stack, kafka, name, unique("shadow"), RS_WORKER_ID="shadow-1",
                   RS_WORKER_MODEL_ALIAS="challenger"),
    )  # fmt: skip
    watcher = Watcher(
        WatcherSettings.model_validate({
            "port": 0, "poll_interval_s": 0.5, "model_names": [name], "kafka": kafka,
            "MLFLOW_TRACKING_URI": stack.mlflow_uri,
        })
    )  # fmt: skip
    async with (
        watcher,
        StatsProcess(
            kafka=kafka,
            database_url=database_url,
            group_id=unique("stats"),
            log_path=tmp_path / "stats.log",
        ) as stats,
    ):
        watching = asyncio.create_task(watcher.run())
        try:
            await serving.wait_ready()
            await shadow.wait_ready()
            await stats.wait_ready()
            assert f"(shadow, answers to {kafka.shadow_predictions_topic}" in shadow.log()

            replay = labelled_replay(REVIEWS)
            blank = ReviewRequest(text="   ", source=Source.REPLAY, reply_to="t")
            producer = AIOKafkaProducer(**kafka.client(), acks="all")
            await producer.start()
            try:
                for request in [*replay, blank]:
                    await producer.send(
                        kafka.requests_topic, encode(request), key=request.request_id.encode()
                    )
                # A malformed record on the shadow topic: dead-lettered by stats, no crash.
                await producer.send_and_wait(kafka.shadow_predictions_topic, b"{not json")
            finally:
                await producer.stop()
            ids = [r.request_id for r in replay]
            await traffic.wait_answered(ids, timeout_s=120)

            # Every answer a client could get (the predictions topic) is production's.
            answers = [p for preds in traffic.predictions.values() for p in preds]
            assert {(p.model_version, p.worker_id) for p in answers} == {(v1, "serving-1")}
            assert {f.worker_id for f in traffic.failures} == {"serving-1"}  # the blank one

            # The challenger answered the same reviews, into the shadow topic only.
            async def shadow_replies() -> list[Prediction | RequestFailed]:
                values = await read_all(kafka, kafka.shadow_predictions_topic)
                return [decode_reply(v) for v in values if v != b"{not json"]

            async def shadowed() -> bool:
                return len({r.request_id for r in await shadow_replies()}) >= REVIEWS + 1

            await eventually(shadowed, timeout_s=120, what="the challenger's shadow answers")
            replies = await shadow_replies()
            shadow_answers = {r.request_id: r for r in replies if isinstance(r, Prediction)}
            assert set(shadow_answers) == set(ids)
            assert {(p.model_version, p.worker_id) for p in shadow_answers.values()} == {
                (v2, "shadow-1")
            }
            assert all(p.explanation is None for p in shadow_answers.values())
            assert [type(r) for r in replies].count(RequestFailed) == 1
            # The blank request was dead-lettered once, by the serving worker only.
            letters = [decode(v, DeadLetter) for v in
                       await read_all(kafka, KafkaSettings.dlq(kafka.requests_topic))]  # fmt: skip
            assert [letter.service for letter in letters] == ["workers/serving-1"]

            # The statistics, side by side: what the read model says is what both answered.
            production = {p.request_id: p for p in answers}
            truth = {r.request_id: r.user_label for r in replay}
            agreed = sum(production[i].label == shadow_answers[i].label for i in ids)
            right_v1 = sum(production[i].label == truth[i] for i in ids)
            right_v2 = sum(shadow_answers[i].label == truth[i] for i in ids)
            stats_db = PostgresStats(
                DatabaseSettings.model_validate({"DATABASE_URL": database_url})
            )
            async with stats_db:

                async def compared() -> bool:
                    out = await stats_db.shadow(ShadowQuery())
                    return bool(out.comparisons) and out.comparisons[0].labelled == REVIEWS

                await eventually(compared, timeout_s=120, what="shadow statistics stored")
                (c,) = (await stats_db.shadow(ShadowQuery())).comparisons
            assert (c.model_name, c.challenger_version, c.production_version) == (name, v2, v1)
            assert (c.compared, c.agreed, c.labelled) == (REVIEWS, agreed, REVIEWS)
            assert (c.production_correct, c.challenger_correct) == (right_v1, right_v2)
            print(
                f"\nshadow figures: {REVIEWS} compared, agreement {c.agreement:.3f}, "
                f"production v{v1} accuracy {c.production_accuracy:.3f}, "
                f"challenger v{v2} accuracy {c.challenger_accuracy:.3f}"
            )

            async def dead_lettered() -> list[DeadLetter]:
                dlq = KafkaSettings.dlq(kafka.shadow_predictions_topic)
                return [decode(v, DeadLetter) for v in await read_all(kafka, dlq)]

            async def any_dead_letter() -> bool:
                return bool(await dead_lettered())

            await eventually(any_dead_letter, timeout_s=60, what="the malformed record's DLQ")
            (letter,) = await dead_lettered()
            assert (letter.service, letter.error_type) == ("stats", "DecodeError")
            assert "not JSON" in letter.reason
            assert stats.alive()

            # Withdrawn: the watcher's tombstone makes the shadow worker stop shadowing.
            client.delete_registered_model_alias(name, "challenger")
            await eventually(
                lambda: "withdrawn" in shadow.log(), timeout_s=60, what="the shadow withdrawn"
            )
            assert (await shadow.get("/readyz")).status == 503
            assert (await serving.get("/readyz")).status == 200
        finally:
            watcher.stop()
            await watching
