"""The live replay gate on the real stack: `python -m export promote` scores the candidate and
the serving version on the latest labelled live reviews (labels from the statistics database,
texts from the requests topic) and refuses a candidate that is worse on them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from typer.testing import CliRunner, Result

from contracts import KafkaSettings, Label
from deploy.local.launcher import LocalStack
from export.__main__ import app as export_app
from inference import OnnxPredictor, load_bundle
from inference.synthetic import profile_texts
from tests.serving import Traffic, mlflow_client, register, unique

REVIEWS = 120
INSERT_PREDICTION = """
INSERT INTO predictions (request_id, model_name, model_version, label, probability, source,
    worker_id, submitted_at, predicted_at, latency_ms, true_label, true_label_given_at)
VALUES ($1, $2, '1', $3, 0.5, 'producer', 'w', $4, $4, 1.0, $3, $4)
"""


async def label_live_reviews(
    database_url: str, name: str, ids: list[str], labels: list[Label]
) -> None:
    """What the stats processor stores for reviews whose senders gave these labels."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("DELETE FROM predictions")
        start = datetime.now(UTC) - timedelta(minutes=10)
        await connection.executemany(
            INSERT_PREDICTION,
            [
                (request_id, name, label, start + timedelta(seconds=i))
                for i, (request_id, label) in enumerate(zip(ids, labels, strict=True))
            ],
        )
    finally:
        await connection.close()


async def test_a_candidate_worse_on_live_reviews_is_not_promoted(
    stack: LocalStack,
    kafka: KafkaSettings,
    database_url: str,
    traffic: Traffic,
    tmp_path: Path,
) -> None:
    client = mlflow_client(stack)
    name = unique("live")
    production = register(client, name, tmp_path, seed=1)
    candidate = register(client, name, tmp_path, seed=2, promote=False)
    texts = [text for text, _ in profile_texts(REVIEWS, seed=5)]
    ids = await traffic.send(texts)  # on the requests topic, as the gateway would put them

    def answers(seed: int) -> list[Label]:
        predictor = OnnxPredictor(load_bundle(tmp_path / f"{name}-{seed}"))
        return [1 if p >= 0.5 else 0 for p in predictor.predict(texts)]

    async def promote(version: str, reason: str, **more: str) -> Result:
        # In a thread: the command runs its own event loop, as from a shell.
        args = ["promote", version, "--reason", reason]
        return await asyncio.to_thread(CliRunner().invoke, export_app, args, env={**env, **more})

    env = {
        "RS_EXPORT_MODEL_NAME": name,
        "DATABASE_URL": database_url,
        "RS_KAFKA_REQUESTS_TOPIC": kafka.requests_topic,
    }

    # The live stream agrees with production: the candidate is worse on it.
    await label_live_reviews(database_url, name, ids, answers(seed=1))
    refused = await promote(candidate, "new")
    assert refused.exit_code == 1, refused.output
    assert "gate live_replay: fail" in refused.output
    assert f"production v{production} 1.0000 on the {REVIEWS} most recent" in refused.output
    assert "gates failed: live_replay" in refused.output
    tags = client.get_model_version(name, candidate).tags
    assert (tags["gates"], tags["gate.live_replay"]) == ("failed", "fail")
    assert client.get_model_version_by_alias(name, "production").version == production

    # Too few labelled reviews to judge: the gate passes and says so.
    few = await promote(candidate, "new", RS_EXPORT_REPLAY_MIN_REVIEWS=str(REVIEWS + 1))
    assert "fewer than the 121 needed to judge" in few.output
    assert few.exit_code == 0, few.output
    client.set_registered_model_alias(name, "production", production)

    # The live stream agrees with the candidate: it is promoted, and the gate says by how much.
    await label_live_reviews(database_url, name, ids, answers(seed=2))
    done = await promote(candidate, "better live")
    assert done.exit_code == 0, done.output
    assert "gate live_replay: pass - live accuracy 1.0000" in done.output
    assert client.get_model_version(name, candidate).tags["gates"] == "passed"
    assert client.get_model_version_by_alias(name, "production").version == candidate


def test_without_a_database_the_gate_is_skipped(stack: LocalStack, tmp_path: Path) -> None:
    client = mlflow_client(stack)
    name = unique("live")
    register(client, name, tmp_path, seed=1)
    candidate = register(client, name, tmp_path, seed=2, promote=False)
    done = CliRunner().invoke(
        export_app, ["promote", candidate, "--reason", "r"],
        env={"RS_EXPORT_MODEL_NAME": name, "DATABASE_URL": None},
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "live_replay" not in done.output
    assert "gate.live_replay" not in client.get_model_version(name, candidate).tags
