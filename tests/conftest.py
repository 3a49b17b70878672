"""Shared fixtures: the real local stack for the session, and per-test isolation inside it.

Each test gets its own topics (unique names, created explicitly) and its own database
(created and migrated), so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from contracts.topics import KafkaSettings
from deploy.local.launcher import LocalStack
from deploy.topics import ensure_topics
from stats.migrate import migrate
from tests.serving import Processes, Traffic

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by what it runs on: e2e where its module says so (whole-system tests
    through the services), integration when it needs the real stack, unit otherwise."""
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            continue
        needs_stack = "stack" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.integration if needs_stack else pytest.mark.unit)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Kafka, PostgreSQL and MLflow, started by the project's own launcher on free ports."""
    local = LocalStack(state_dir=tmp_path_factory.mktemp("stack") / "state")
    # MLflow's password is known after the start (the stack makes it): these keys too.
    keys = [*local.env, "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_PASSWORD_FILE"]
    saved = {key: os.environ.get(key) for key in keys}
    try:
        local.start()
        os.environ.pop("MLFLOW_TRACKING_PASSWORD_FILE", None)
        # in-process settings classes and MLflow clients read the same values (MLflow as admin)
        os.environ.update(local.env)
        yield local
    finally:
        local.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def kafka(stack: LocalStack) -> KafkaSettings:
    """Kafka settings whose topics are new and belong to this test alone."""
    prefix = unique("t")
    settings = KafkaSettings().prefixed(
        prefix,
        bootstrap_servers=stack.bootstrap_servers,
        requests_partitions=3,
        predictions_partitions=3,
        feedback_partitions=2,
    )
    await ensure_topics(settings)
    return settings


@pytest.fixture
async def database_url(stack: LocalStack) -> AsyncIterator[str]:
    """A freshly created and migrated database for this test alone."""
    name = unique("t").replace("-", "_")
    admin_url = urlsplit(stack.database_url)._replace(path="/postgres").geturl()
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = urlsplit(stack.database_url)._replace(path=f"/{name}").geturl()
        await migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Service subprocesses that are always stopped when the test ends."""
    with Processes(tmp_path) as processes:
        yield processes


@pytest.fixture
async def traffic(kafka: KafkaSettings) -> AsyncIterator[Traffic]:
    """A producer of requests and a reader of predictions on this test's topics."""
    async with Traffic(kafka) as t:
        yield t
