"""Moving the serving alias under load: every request answered, versions switch, none fail;
the new version is fetched ahead of the move; a corrupt version, and one that fails its
reference check (after the served version's weights left memory to make room for it), are
refused while the old one keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

from contracts import KafkaSettings
from deploy.local.launcher import LocalStack
from tests.serving import (
    Load,
    Processes,
    Traffic,
    corrupt,
    eventually,
    mlflow_client,
    register,
    service_env,
    unique,
    worker_env,
)


async def test_alias_move_under_load_switches_versions_and_a_corrupt_one_is_refused(
    stack: LocalStack, kafka: KafkaSettings, procs: Processes, traffic: Traffic, tmp_path: Path
) -> None:
    client = mlflow_client(stack)
    name = unique("model")
    old = register(client, name, tmp_path, seed=1, buckets=2**16)  # weights in model.onnx.data
    watcher = procs.start(
        "registry_watcher",
        service_env(
            stack, kafka,
            RS_WATCHER_MODEL_NAMES=name, RS_WATCHER_POLL_INTERVAL_S=0.5, RS_WATCHER_PORT=0,
            # The watcher would refuse the corrupt version itself (tests/registry_watcher):
            # here it trusts the artifacts, so the workers' own check is what is tested.
            RS_WATCHER_VERIFY_ARTIFACTS="false",
        ),
    )  # fmt: skip
    worker = procs.start("workers", worker_env(stack, kafka, name, unique("group")))
    await watcher.wait_ready()
    await worker.wait_ready()

    def versions() -> list[str]:
        return [p.model_version for _, p in traffic.arrivals]

    async def answers_go_on(what: str) -> None:
        """50 more answers arrive (from the version still served)."""
        arrived = len(traffic.arrivals)
        await eventually(lambda: len(traffic.arrivals) > arrived + 50, timeout_s=60, what=what)

    load = Load(traffic, per_tick=5, tick_s=0.05).start()
    try:
        await eventually(lambda: old in versions(), timeout_s=60, what=f"answers from {old}")

        # A new version: the watcher announces it as the next one, and the worker fetches and
        # verifies its bundle ahead.
        new = register(client, name, tmp_path, seed=2, promote=False, buckets=2**16)

        async def fetched_ahead() -> bool:
            return await worker.metric("rs_worker_prefetched_model_version") == int(new)

        await eventually(fetched_ahead, timeout_s=60, what=f"version {new} fetched ahead")

        # The alias moves; the watcher announces it; the worker loads from disk, checks, swaps.
        client.set_registered_model_alias(name, "production", new)
        moved_at = time.monotonic()
        await eventually(lambda: new in versions(), timeout_s=60, what=f"answers from {new}")
        switch_s = next(t for t, p in traffic.arrivals if p.model_version == new) - moved_at
        print(f"first answer from version {new} {switch_s:.2f}s after the alias moved")

        # A version whose artifact does not match its registered sha256 is refused.
        bad = register(client, name, tmp_path, seed=3, promote=False)
        corrupt(client, name, bad)
        client.set_registered_model_alias(name, "production", bad)

        async def refused() -> bool:
            return await worker.metric("rs_worker_model_loads_total", outcome="refused") >= 1

        await eventually(refused, timeout_s=60, what=f"the worker to refuse version {bad}")
        await answers_go_on("answers after the refusal")

        # One that does not reproduce its reference outputs: refused at its check, which runs
        # once the served version's weights left memory; they come back as it answers on.
        wrong = register(
            client, name, tmp_path, seed=4, promote=False, buckets=2**16, wrong_reference=True
        )
        client.set_registered_model_alias(name, "production", wrong)

        async def refused_at_reference() -> bool:
            return (
                await worker.metric(
                    "rs_worker_model_loads_total", outcome="refused", stage="reference"
                )
                >= 1
            )

        await eventually(refused_at_reference, timeout_s=60, what=f"refusing version {wrong}")
        await answers_go_on("answers after the reference refusal")
    finally:
        sent = await load.stop()

    await traffic.wait_answered(sent, timeout_s=60)
    assert not traffic.dead_letters
    # One worker swaps between batches: all old answers, then all new ones, never a mix.
    answers = sorted((p for _, p in traffic.arrivals), key=lambda p: p.predicted_at)
    order = [p.model_version for p in answers]
    switch = order.index(new)
    assert set(order[:switch]) == {old}
    assert set(order[switch:]) == {new}, "after the switch only the new version answers"
    assert (
        await worker.metric("rs_worker_model_loads_total", outcome="refused", stage="verify") == 1
    )
    assert await worker.metric("rs_worker_model_info", model_version=new) == 1
    # Loaded from the bundle fetched ahead: not downloaded at the move.
    assert await worker.metric("rs_worker_model_load_step_seconds_count", step="prefetched") == 1
    assert f"refused {name} version {bad} at verify" in worker.log()
    assert f"refused {name} version {wrong} at reference" in worker.log()
    assert (
        await worker.metric("rs_worker_model_loads_total", outcome="refused", stage="reference")
        == 1
    )
    # The move to the new version made room for its check: the old one's weights dropped.
    assert (
        await worker.metric("rs_worker_model_load_step_seconds_count", step="drop served pages")
        == 1
    )
    assert await worker.metric("rs_worker_model_load_failures_total", stage="reference") == 1
    assert (await worker.get("/readyz")).status == 200
    assert watcher.alive()
