"""The registry watcher against a real MLflow server that goes away and comes back.

MLflow is reached through a TCP relay that the test opens and closes, so "MLflow is down"
means what it means in production: connections are refused, and cut when it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from contracts import ChangeReason, KafkaSettings, ModelChanged
from deploy.local.launcher import LocalStack, free_port
from registry_watcher.service import Watcher
from registry_watcher.settings import Settings
from runtime.kafka import ModelEvents
from runtime.signing import Verifier
from tests.serving import eventually, mlflow_client, register, unique


class Relay:
    """Forwards a local port to a target port while open; refuses connections while closed."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers -= {writer, upstream_writer}


@pytest.fixture
async def relay(stack: LocalStack) -> AsyncIterator[Relay]:
    r = Relay(int(stack.mlflow_uri.rsplit(":", 1)[1]))
    try:
        yield r
    finally:
        await r.close()


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Watcher]:
    async with Watcher(settings) as watcher:
        task = asyncio.create_task(watcher.run())
        try:
            yield watcher
        finally:
            watcher.stop()
            await asyncio.wait_for(task, timeout=30)


async def topic_events(kafka: KafkaSettings, alias: str = "production") -> list[ModelChanged]:
    """Every event of ``alias`` on the models topic, in order (the next versions announced
    ahead, ``production~candidate``, are not the serving alias's)."""
    events = ModelEvents(kafka, client_id=unique("test-reader"), verifier=Verifier({}))
    await events.start()
    try:
        found: list[ModelChanged] = []
        while batch := await events.fetch(timeout_s=0.5):
            found += batch
        return [e for e in found if e.alias == alias]
    finally:
        await events.stop()


def polls(watcher: Watcher, outcome: str) -> float:
    value = watcher.metrics.registry.get_sample_value(
        "rs_watcher_polls_total", {"outcome": outcome}
    )
    return value or 0.0


def events_are(
    kafka: KafkaSettings, expected: list[tuple[str, ChangeReason]]
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return [(e.version, e.reason) for e in await topic_events(kafka)] == expected

    return check


async def test_watcher_survives_mlflow_down_and_announces_only_changes(
    stack: LocalStack,
    kafka: KafkaSettings,
    relay: Relay,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fail fast on a refused connection, as `python -m registry_watcher` configures it.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    client = mlflow_client(stack)
    name = unique("model")
    v1 = register(client, name, tmp_path, seed=1)
    settings = Settings(
        port=0, poll_interval_s=0.3, model_names=[name], kafka=kafka,
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{relay.port}",
    )  # fmt: skip

    async with running(settings) as watcher:
        # MLflow unreachable: the watcher polls on, not ready, and says why.
        await eventually(
            lambda: polls(watcher, "error") >= 3,
            timeout_s=30,
            what="failed polls",
        )
        assert not (await watcher.readiness()).ready
        assert "registry" in ((await watcher.readiness()).reason or "")

        await relay.open()  # MLflow is back: the current state is announced
        await eventually(
            events_are(kafka, [(v1, ChangeReason.PROMOTED)]), timeout_s=30, what="v1 announced"
        )
        assert (await watcher.readiness()).ready

        await relay.close()  # and away again, with connections cut
        errors = polls(watcher, "error")
        await eventually(
            lambda: polls(watcher, "error") > errors,
            timeout_s=30,
            what="failed polls after MLflow went away",
        )

    # Moved while no watcher ran: a new watcher reads the topic and announces only the move.
    v2 = register(client, name, tmp_path, seed=2)
    await relay.open()
    async with running(settings) as watcher:
        await eventually(
            events_are(kafka, [(v1, ChangeReason.PROMOTED), (v2, ChangeReason.ALIAS_MOVED)]),
            timeout_s=30,
            what="v2 announced once",
        )
        client.set_registered_model_alias(name, "production", v1)
        await eventually(
            events_are(
                kafka,
                [
                    (v1, ChangeReason.PROMOTED),
                    (v2, ChangeReason.ALIAS_MOVED),
                    (v1, ChangeReason.ROLLED_BACK),
                ],
            ),
            timeout_s=30,
            what="the rollback announced",
        )

    # A restart with nothing new says nothing.
    async with running(settings) as watcher:
        await eventually(
            lambda: polls(watcher, "ok") >= 3,
            timeout_s=30,
            what="polls",
        )
    assert len(await topic_events(kafka)) == 3
