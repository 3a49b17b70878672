"""Real services and real traffic for the serving tests.

- :class:`Processes` starts ``python -m <package>`` subprocesses
  (``deploy.local.processes.ServiceProcess``: SIGKILL and SIGTERM are real, the port is the one
  each logged, /readyz and /metrics are read) and kills whatever is left when the test ends.
- :class:`Traffic` produces ReviewRequests (or raw bytes) to the requests topic and reads the
  predictions and dead-letter topics back into memory.
- :func:`eventually` polls a condition until a deadline: the only way these tests wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from mlflow import MlflowClient

from contracts import (
    DeadLetter,
    KafkaSettings,
    Label,
    Prediction,
    RequestFailed,
    ReviewRequest,
    Source,
    decode,
    decode_reply,
    encode,
)
from deploy.local.launcher import LocalStack
from deploy.local.processes import ServiceProcess, kafka_env
from export.gates import Gate
from export.registry import record_gates
from inference.bundle import MANIFEST, MODEL_FILE, REFERENCE_FILE, Bundle, write_bundle
from inference.registry import SHA_TAG, register_bundle
from inference.synthetic import make_fast_bundle

REVIEWS = [
    "The food was wonderful and the staff were kind.",
    "Terrible service, cold food, never again.",
    "Best tacos in town, we will be back!",
    "The museum was closed when the website said open. Waste of a trip.",
    "Dr. Lee listened and explained everything clearly.",
    "Overpriced and bland.",
    "Friendly shop, fair prices, quick repair.",
    "It was fine.",
]


async def eventually(
    condition: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    what: str,
    every_s: float = 0.2,
) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(every_s)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- models in the real registry ------------------------------------------------------------


def mlflow_client(stack: LocalStack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)


def register(
    client: MlflowClient,
    name: str,
    tmp_path: Path,
    *,
    seed: int,
    promote: bool = True,
    gates_pass: bool = True,
    profile: bool = False,
    buckets: int = 4096,
    wrong_reference: bool = False,
) -> str:
    """Register a small real bundle as a new version of ``name``, with one gate result (the
    watcher ships only a version that passed); optionally point the alias. ``buckets`` of
    1 << 14 or more put its weights in ``model.onnx.data``; ``wrong_reference`` records
    reference outputs it does not reproduce (its sha256 matches: only its check fails)."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(experiment_id)
    bundle = make_fast_bundle(
        tmp_path / f"{name}-{seed}", seed=seed, profile=profile, buckets=buckets
    )
    if wrong_reference:
        bundle = misreferenced(bundle, tmp_path / f"{name}-{seed}-misreferenced")
    registered = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    record_gates(client, registered, [synthetic_gate(gates_pass)])
    version = str(registered.version)
    client.set_terminated(run.info.run_id)
    if promote:
        client.set_registered_model_alias(name, "production", version)
    return version


OWN_FILES = {MANIFEST, MODEL_FILE, REFERENCE_FILE}  # written by write_bundle itself


def misreferenced(bundle: Bundle, path: Path) -> Bundle:
    """The same model, with reference outputs it does not reproduce (each p off by 0.5)."""
    reference = bundle.reference()
    return write_bundle(
        path,
        model_file=bundle.model_file,
        family=bundle.family,
        preprocessing=bundle.preprocessing,
        reference_texts=reference["texts"],
        reference_probabilities=[(p + 0.5) % 1.0 for p in reference["probabilities"]],
        extra_files=[f for f in bundle.path.iterdir() if f.name not in OWN_FILES],
    )


def serving_and_next(stack: LocalStack, tmp_path: Path) -> tuple[MlflowClient, str, str, str]:
    """A new model with v1 serving (promoted) and v2 registered, passed, not promoted:
    (client, name, v1, v2)."""
    client = mlflow_client(stack)
    name = unique("model")
    v1 = register(client, name, tmp_path, seed=1)
    v2 = register(client, name, tmp_path, seed=2, promote=False)
    return client, name, v1, v2


def synthetic_gate(passed: bool) -> Gate:
    detail = "a test's synthetic model" + ("" if passed else ", failing on purpose")
    return Gate("accuracy_floor", passed, 0.96 if passed else 0.5, 0.95, detail)


def corrupt(client: MlflowClient, name: str, version: str) -> None:
    """Make the registry's sha256 for a version disagree with its artifact."""
    client.set_model_version_tag(name, version, SHA_TAG, "0" * 64)


# -- services as subprocesses ---------------------------------------------------------------


def service_env(
    stack: LocalStack, kafka: KafkaSettings, **settings: str | int | float
) -> dict[str, str]:
    env = kafka_env(kafka) | {"MLFLOW_TRACKING_URI": stack.mlflow_uri}
    env.update({key: str(value) for key, value in settings.items()})
    return env


def worker_env(
    stack: LocalStack, kafka: KafkaSettings, model_name: str, group_id: str, **settings: Any
) -> dict[str, str]:
    defaults: dict[str, Any] = {
        "RS_WORKER_MODEL_NAME": model_name,
        "RS_WORKER_GROUP_ID": group_id,
        "RS_WORKER_PORT": 0,
        # The broker's smallest session timeout: a killed worker's partitions move soon.
        "RS_WORKER_SESSION_TIMEOUT_MS": 6000,
        "RS_WORKER_HEARTBEAT_INTERVAL_MS": 1000,
        "RS_WORKER_REGISTRY_POLL_INTERVAL_S": 1,
    }
    return service_env(stack, kafka, **(defaults | settings))


class Processes:
    """Services started by one test (each finds its own port and logs it); all killed on exit,
    whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ServiceProcess] = []

    def start(self, package: str, env: Mapping[str, str]) -> ServiceProcess:
        log_path = self.log_dir / f"{package}-{len(self.started)}.log"
        service = ServiceProcess(package, env=env, log_path=log_path)
        service.start()
        self.started.append(service)
        return service

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for service in self.started:
            service.kill()
        # pytest shows this only for a failed test: what the services said.
        for service in self.started:
            sys.stderr.write(f"--- {service.log_path.name} ---\n{service.log()[-6000:]}\n")


# -- traffic --------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Requests in, predictions and dead letters out, on the real broker."""

    kafka: KafkaSettings
    predictions: dict[str, list[Prediction]] = field(default_factory=lambda: defaultdict(list))
    arrivals: list[tuple[float, Prediction]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    failures: list[RequestFailed] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    offsets: dict[tuple[int, int], str] = field(default_factory=dict)

    async def __aenter__(self) -> Traffic:
        self._producer = AIOKafkaProducer(**self.kafka.client(), acks="all", linger_ms=2)
        await self._producer.start()
        self._readers = [
            await self._reader(self.kafka.predictions_topic, self._on_prediction),
            await self._reader(KafkaSettings.dlq(self.kafka.requests_topic), self._on_dead),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task, consumer in self._readers:
            task.cancel()
            await consumer.stop()
        await self._producer.stop()

    async def _reader(
        self, topic: str, handle: Callable[[bytes], None]
    ) -> tuple[asyncio.Task[None], AIOKafkaConsumer]:
        consumer = AIOKafkaConsumer(
            topic,
            **self.kafka.client(),
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()

        async def read() -> None:
            async for message in consumer:
                handle(message.value)

        return asyncio.create_task(read()), consumer

    def _on_prediction(self, value: bytes) -> None:
        prediction = decode_reply(value)
        if isinstance(prediction, RequestFailed):
            self.failures.append(prediction)
            return
        self.predictions[prediction.request_id].append(prediction)
        self.arrivals.append((time.monotonic(), prediction))

    def _on_dead(self, value: bytes) -> None:
        self.dead_letters.append(decode(value, DeadLetter))

    async def send(
        self,
        texts: Iterable[str],
        *,
        key: bytes | None = None,
        labels: Iterable[Label] | None = None,
    ) -> list[str]:
        """One ReviewRequest per text (with the user's label, given ``labels``), keyed by
        request_id unless ``key``; waits for the acks."""
        texts = list(texts)
        given: list[Label | None] = list(labels) if labels is not None else [None] * len(texts)
        requests = [
            ReviewRequest(text=t, source=Source.PRODUCER, reply_to="t", user_label=label)
            for t, label in zip(texts, given, strict=True)
        ]
        futures = []
        for request in requests:
            self.sent_at[request.request_id] = time.monotonic()
            futures.append(
                await self._producer.send(
                    self.kafka.requests_topic,
                    encode(request),
                    key=key or request.request_id.encode(),
                )
            )
        for request, metadata in zip(requests, await asyncio.gather(*futures), strict=True):
            self.offsets[(metadata.partition, metadata.offset)] = request.request_id
        return [r.request_id for r in requests]

    async def send_raw(self, value: bytes | None, *, key: bytes) -> None:
        await self._producer.send_and_wait(self.kafka.requests_topic, value, key=key)

    def missing(self, ids: Iterable[str]) -> list[str]:
        return [i for i in ids if i not in self.predictions]

    async def wait_answered(self, ids: list[str], *, timeout_s: float = 60) -> None:
        await eventually(
            lambda: not self.missing(ids),
            timeout_s=timeout_s,
            what=f"answers to {len(ids)} requests ({len(self.missing(ids))} missing)",
        )


class Load:
    """A steady stream of requests in the background, until stopped."""

    def __init__(self, traffic: Traffic, *, per_tick: int = 5, tick_s: float = 0.05) -> None:
        self.traffic = traffic
        self.per_tick = per_tick
        self.tick_s = tick_s
        self.sent: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def _run(self) -> None:
        i = 0
        while not self._stopping.is_set():
            texts = [REVIEWS[(i + k) % len(REVIEWS)] for k in range(self.per_tick)]
            i += self.per_tick
            self.sent += await self.traffic.send(texts)
            # Pacing of the load, not a synchronisation; stop() ends the wait early.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.tick_s)

    def start(self) -> Load:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> list[str]:
        """Stop after the send in flight: cancelling it could leave requests produced (and
        answered and counted) that ``sent`` never names."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        return self.sent

    async def __aenter__(self) -> Load:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
