"""``stats.connect`` on the real PostgreSQL: the one-shot jobs ride out a server or a name that
is not there yet, and fail at once on what waiting cannot fix."""

from __future__ import annotations

import asyncio
import logging
import socket
from urllib.parse import urlsplit

import asyncpg
import pytest

from deploy.local.launcher import free_port
from stats.connect import connect


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    upstream_reader, upstream_writer = await asyncio.open_connection(host, port)

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        sink.close()

    await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_a_server_that_starts_listening_later_is_waited_for(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The port refuses connections at first (nothing listens), then the server is there."""
    real = urlsplit(database_url)
    host, upstream_port = str(real.hostname), int(str(real.port))
    port = free_port()
    url = real._replace(netloc=f"{real.username}:{real.password}@127.0.0.1:{port}").geturl()

    async def listen_later() -> asyncio.Server:
        await asyncio.sleep(1)
        return await asyncio.start_server(
            lambda r, w: _forward(r, w, host, upstream_port), "127.0.0.1", port
        )

    caplog.set_level(logging.INFO, logger="stats.connect")
    server_started = asyncio.ensure_future(listen_later())
    conn = await connect(url, timeout_s=30)
    try:
        assert await conn.fetchval("SELECT current_database()") == real.path.lstrip("/")
    finally:
        await conn.close()
        (await server_started).close()
    # Refused first, then waited for, as a service waits (runtime.startup.wait_for).
    assert f"waiting for PostgreSQL at 127.0.0.1:{port}" in caplog.text
    assert f"connected to PostgreSQL at 127.0.0.1:{port} (after" in caplog.text


async def test_a_name_that_does_not_resolve_is_retried_until_the_time_is_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="stats.connect")
    with pytest.raises(socket.gaierror):
        await connect("postgresql://u:p@postgres.invalid:5432/db", timeout_s=1, cap_s=0.2)
    assert "waiting for PostgreSQL at postgres.invalid:5432" in caplog.text
    assert "(attempt 2)" in caplog.text  # retried, not given up after the first


async def test_a_wrong_password_fails_at_once_with_postgresqls_message(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    real = urlsplit(database_url)
    wrong = real._replace(netloc=f"{real.username}:wrong@{real.hostname}:{real.port}").geturl()
    caplog.set_level(logging.DEBUG, logger="stats.connect")
    with pytest.raises(asyncpg.InvalidPasswordError, match="password authentication failed"):
        await connect(wrong, timeout_s=60)
    assert "waiting for PostgreSQL" not in caplog.text
