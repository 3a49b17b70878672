"""StatusReporter: the report follows the worker's state, and a send that reaches no broker is
logged and counted, never raised (the next heartbeat tries again)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from contracts import KafkaSettings, WorkerState
from deploy.local.launcher import free_port
from tests.workers.test_models import ConstantPredictor, event
from workers.metrics import WorkerMetrics
from workers.models import LoadedModel, ModelRefused
from workers.reload import Failure
from workers.settings import Settings
from workers.status import StatusReporter


async def no_lag() -> int | None:
    return None


def reporter(**changes: object) -> tuple[StatusReporter, WorkerMetrics]:
    settings = Settings.model_validate(
        {"worker_id": "w1", "model_name": "m", "heartbeat_s": 0.5, **changes}
    )
    metrics = WorkerMetrics()
    return StatusReporter(settings, metrics, lag=no_lag), metrics


def state_of(status: StatusReporter) -> WorkerState:
    return status.status.state  # read afresh (mypy would narrow an attribute across calls)


def test_the_report_follows_loading_failures_and_the_swap() -> None:
    status, _ = reporter()
    assert state_of(status) is WorkerState.STARTING
    wanted = event("2")
    status.loading(wanted, 0)
    assert (status.status.state, status.status.wanted_version) == (WorkerState.LOADING, "2")
    error = ModelRefused("download", "ConnectionError: MLflow is away")
    status.failed(Failure(wanted, error, attempts=1, retrying=True))
    assert state_of(status) is WorkerState.FAILED
    assert status.status.load_attempts == 1
    reason = "download: ConnectionError: MLflow is away (retrying with backoff)"
    assert status.status.error == reason
    status.loading(wanted, 1)  # the retry keeps the count and the last reason
    assert (status.status.load_attempts, status.status.error) == (1, reason)
    served = LoadedModel("m", "2", wanted.sha256, ConstantPredictor(0.5))
    status.serving(served, wanted)
    assert state_of(status) is WorkerState.SERVING
    report = status.status
    assert (report.version, report.load_attempts, report.error) == ("2", 1, None)


async def test_a_send_that_reaches_no_broker_is_counted_not_raised() -> None:
    status, metrics = reporter(kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"))
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{free_port()}")
    try:
        assert not await status.publish(producer)
        assert not await status.publish(producer)
    finally:
        await producer.stop()
    assert metrics.errors.labels(kind="status")._value.get() == 2
