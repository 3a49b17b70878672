"""Fixtures of the serving tests: worker and watcher processes, and traffic on the test's topics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contracts import KafkaSettings
from tests.integration.serving import Processes, Traffic


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
