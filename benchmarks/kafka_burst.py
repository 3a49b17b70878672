"""A burst of real Yelp test reviews through Kafka and one worker, next to raw ONNX Runtime.

    .venv/bin/python -m benchmarks.kafka_burst --requests 5000

Starts its own local stack on free ports (or uses the configured one with ``--no-own-stack``),
registers a model in MLflow, starts ``python -m workers`` and measures, in the same run:

- raw: ``OnnxPredictor.predict`` in this process on the same reviews, in batches of the worker's
  max batch size, with the worker's ONNX Runtime thread settings;
- kafka: every review produced to the requests topic at once, and each prediction read back;
  throughput = requests / (last answer - first send); latency = answer read - request sent.

The model is a ``make_fast_bundle`` graph (the fast model's shape and preprocessing, 2**18 hash
buckets, random weights) unless ``--bundle`` names a trained bundle folder. The producer, the
reading consumer, the broker and the worker share this machine's cores: read the ratio, not
the absolute figures.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import KafkaSettings, Prediction, ReviewRequest, Source, decode, encode
from deploy.topics import ensure_topics
from inference import Bundle, OnnxPredictor, load_bundle

ROOT = Path(__file__).resolve().parent.parent
DATA_CANDIDATES = [ROOT.parent / "shared"]

app = typer.Typer(add_completion=False)


def default_data() -> Path:
    for shared in DATA_CANDIDATES:
        path = shared / "data" / "yelp" / "test.csv.gz"
        if path.is_file():
            return path
    return DATA_CANDIDATES[0] / "data" / "yelp" / "test.csv.gz"


DEFAULT_DATA = default_data()


def read_reviews(path: Path, count: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f) if row["text"].strip()]
    return list(itertools.islice(itertools.cycle(texts), count))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raw_throughput(bundle: Bundle, texts: list[str], batch_size: int, threads: int) -> float:
    predictor = OnnxPredictor(bundle, intra_op_threads=threads, inter_op_threads=1)
    predictor.predict(texts[:batch_size])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        predictor.predict(texts[i : i + batch_size])
    return len(texts) / (time.perf_counter() - started)


def register_model(tracking_uri: str, bundle: Bundle, name: str) -> str:
    from mlflow import MlflowClient

    from inference.registry import register_bundle

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run = client.create_run(client.create_experiment(name))
    version = register_bundle(client, run_id=run.info.run_id, bundle=bundle, model_name=name)
    client.set_terminated(run.info.run_id)
    client.set_registered_model_alias(name, "production", version.version)
    return str(version.version)


def wait_ready(log: Path, process: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    port = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{log.read_text()[-3000:]}")
        if port is None and (m := re.search(r"metrics on http://[\d.]+:(\d+)", log.read_text())):
            port = int(m.group(1))
        if port is not None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.5)
    raise TimeoutError(f"the worker was not ready in {timeout_s}s:\n{log.read_text()[-3000:]}")


async def burst(
    kafka: KafkaSettings, texts: list[str], timeout_s: float
) -> tuple[dict[str, float], dict[str, tuple[float, Prediction]]]:
    consumer = AIOKafkaConsumer(
        kafka.predictions_topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="latest",
    )
    await consumer.start()
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    sent: dict[str, float] = {}
    answers: dict[str, tuple[float, Prediction]] = {}
    try:
        requests = [ReviewRequest(text=t, source=Source.PRODUCER) for t in texts]
        futures = []
        for request in requests:
            sent[request.request_id] = time.monotonic()
            futures.append(
                await producer.send(
                    kafka.requests_topic, encode(request), key=request.request_id.encode()
                )
            )
        await asyncio.gather(*futures)
        deadline = time.monotonic() + timeout_s
        while len(answers) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            now = time.monotonic()
            for messages in batches.values():
                for message in messages:
                    prediction = decode(message.value, Prediction)
                    if prediction.request_id in sent:
                        answers.setdefault(prediction.request_id, (now, prediction))
    finally:
        await producer.stop()
        await consumer.stop()
    return sent, answers


@app.command()
def main(
    requests: Annotated[int, typer.Option(help="reviews in the burst")] = 5000,
    batch_size: Annotated[int, typer.Option(help="the worker's max batch size")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="the worker's max batch wait")] = 10.0,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads")] = 1,
    data: Annotated[Path, typer.Option(help="gzip CSV with a text column")] = DEFAULT_DATA,
    bundle_dir: Annotated[
        Path | None, typer.Option("--bundle", help="a trained bundle folder to serve")
    ] = None,
    own_stack: Annotated[
        bool, typer.Option(help="start a local stack on free ports for this run")
    ] = True,
) -> None:
    texts = read_reviews(data, requests)
    work = Path(tempfile.mkdtemp(prefix="kafka-burst-"))
    if bundle_dir is not None:
        bundle = load_bundle(bundle_dir)
        model = f"trained bundle {bundle_dir} (family {bundle.family})"
    else:
        from tests.modelfactory import make_fast_bundle

        bundle = make_fast_bundle(work / "bundle", seed=7, buckets=2**18)
        model = "make_fast_bundle: fast-model graph, 2**18 hash buckets, random weights"

    stack = None
    env = dict(os.environ)
    if own_stack:
        from tests.localstack import LocalStack

        typer.echo("starting a local stack on free ports...")
        stack = LocalStack(state_dir=work / "state")
        stack.start()
        env |= stack.env
    worker: subprocess.Popen[bytes] | None = None
    try:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        kafka = KafkaSettings(
            bootstrap_servers=env.get("RS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            requests_topic=f"{prefix}.requests",
            predictions_topic=f"{prefix}.predictions",
            feedback_topic=f"{prefix}.feedback",
            models_topic=f"{prefix}.models",
        )
        asyncio.run(ensure_topics(kafka))
        tracking_uri = env.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
        version = register_model(tracking_uri, bundle, prefix)

        typer.echo("measuring raw in-process ONNX Runtime throughput...")
        raw = raw_throughput(bundle, texts, batch_size, threads)

        log = work / "worker.log"
        worker_env = env | {
            "RS_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "RS_KAFKA_REQUESTS_TOPIC": kafka.requests_topic,
            "RS_KAFKA_PREDICTIONS_TOPIC": kafka.predictions_topic,
            "RS_KAFKA_MODELS_TOPIC": kafka.models_topic,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "RS_WORKER_MODEL_NAME": prefix,
            "RS_WORKER_GROUP_ID": prefix,
            "RS_WORKER_PORT": "0",
            "RS_WORKER_MAX_BATCH_SIZE": str(batch_size),
            "RS_WORKER_MAX_WAIT_MS": str(max_wait_ms),
            "RS_WORKER_INTRA_OP_THREADS": str(threads),
        }
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "workers"], cwd=ROOT, env=worker_env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        typer.echo("waiting for the worker...")
        wait_ready(log, worker)
        asyncio.run(burst(kafka, texts[:200], timeout_s=60))  # warm-up: connections, group

        typer.echo(f"burst of {len(texts)} reviews through Kafka...")
        sent, answers = asyncio.run(burst(kafka, texts, timeout_s=300))
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        if stack is not None:
            stack.stop()

    if not answers:
        typer.echo("no answers came back", err=True)
        raise typer.Exit(1)
    first_sent = min(sent.values())
    last_answer = max(t for t, _ in answers.values())
    through_kafka = len(answers) / (last_answer - first_sent)
    latencies = [(t - sent[rid]) * 1000 for rid, (t, _) in answers.items()]
    batches = [p.timings.batch_size for _, p in answers.values()]
    inference = {p.timings.inference_ms for _, p in answers.values()}
    lengths = [len(t) for t in texts]
    typer.echo(
        f"""
model:            {model}, version {version}
reviews:          {len(texts)} from {data.name} (cycled), mean {statistics.mean(lengths):.0f} chars
worker:           1 process, max batch {batch_size}, max wait {max_wait_ms:g} ms, {threads} ORT thread(s)
machine:          {os.cpu_count()} cores shared by broker, MLflow, worker and this client

raw ONNX Runtime: {raw:9.0f} reviews/s (in-process predict, batches of {batch_size})
through Kafka:    {through_kafka:9.0f} reviews/s ({len(answers)}/{len(sent)} answered)
ratio:            {through_kafka / raw:9.2f} of raw
latency (ms):     p50 {percentile(latencies, 0.5):.0f}  p95 {percentile(latencies, 0.95):.0f}  p99 {percentile(latencies, 0.99):.0f}  max {max(latencies):.0f}   (send -> answer read, burst)
batches:          mean size {statistics.mean(batches):.1f} (per answer), inference {statistics.mean(inference):.1f} ms mean per batch
"""  # noqa: E501
    )
    if len(answers) < len(sent):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
