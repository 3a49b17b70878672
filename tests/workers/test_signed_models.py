"""Signed models topic on the real stack: the watcher signs, the worker trusts only its key.

Forged ModelChanged records (unsigned, signed with another key, or altered after signing) are
refused and counted while the worker keeps serving; the watcher's own signed move ships."""

from __future__ import annotations

from pathlib import Path

from aiokafka import AIOKafkaProducer

from contracts import KafkaSettings, encode
from deploy.local.launcher import LocalStack
from inference.registry import changed_event
from runtime.signing import Signer, new_key_pair
from tests.serving import (
    Load,
    Processes,
    Traffic,
    eventually,
    mlflow_client,
    register,
    service_env,
    unique,
    worker_env,
)


async def test_forged_model_events_are_refused_and_signed_ones_ship(
    stack: LocalStack, kafka: KafkaSettings, procs: Processes, traffic: Traffic, tmp_path: Path
) -> None:
    new_key_pair(tmp_path / "release.pem", tmp_path / "release.pub")
    new_key_pair(tmp_path / "attacker.pem", tmp_path / "attacker.pub")
    trusted = {"RS_MODELS_VERIFY_KEY_FILES": str(tmp_path / "release.pub")}
    client = mlflow_client(stack)
    name = unique("model")
    old = register(client, name, tmp_path, seed=1)
    watcher = procs.start(
        "registry_watcher",
        service_env(
            stack, kafka, RS_WATCHER_MODEL_NAMES=name, RS_WATCHER_POLL_INTERVAL_S=0.5,
            RS_WATCHER_PORT=0, RS_MODELS_SIGNING_KEY_FILE=str(tmp_path / "release.pem"), **trusted,
        ),
    )  # fmt: skip
    worker = procs.start("workers", worker_env(stack, kafka, name, unique("group"), **trusted))
    await watcher.wait_ready()
    await worker.wait_ready()

    def versions() -> list[str]:
        return [p.model_version for _, p in traffic.arrivals]

    # A version in the registry that nobody promoted: what a forger would like served.
    wanted = register(client, name, tmp_path, seed=2, promote=False)
    value = encode(changed_event(client.get_model_version(name, wanted), "production"))
    key = name.encode()
    attacker = Signer.from_file(tmp_path / "attacker.pem")
    release = Signer.from_file(tmp_path / "release.pem")
    forged = {
        "unsigned": None,
        "unknown_key": attacker.headers(key, value),
        # A genuine signature, of another record.
        "bad_signature": release.headers(key, value.replace(b'"production"', b'"x"')),
    }
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    async with Load(traffic, per_tick=5, tick_s=0.05):
        await eventually(lambda: old in versions(), timeout_s=60, what=f"answers from {old}")
        try:
            for headers in forged.values():
                await producer.send_and_wait(kafka.models_topic, value, key=key, headers=headers)
        finally:
            await producer.stop()

        async def all_refused() -> bool:
            counts = [
                await worker.metric("rs_worker_models_refused_total", reason=reason)
                for reason in forged
            ]
            return counts == [1, 1, 1]

        await eventually(all_refused, timeout_s=30, what="the worker to refuse the 3 forgeries")
        served = len(traffic.arrivals)
        await eventually(
            lambda: len(traffic.arrivals) > served + 50, timeout_s=30, what="answers after them"
        )
        assert set(versions()) == {old}, "a forged event made the worker serve another version"

        # The release path: the alias moves, the watcher signs, the worker ships it.
        client.set_registered_model_alias(name, "production", wanted)
        await eventually(lambda: wanted in versions(), timeout_s=60, what=f"answers from {wanted}")
    assert "refusing record" in worker.log()
    assert "unknown key" in worker.log()
