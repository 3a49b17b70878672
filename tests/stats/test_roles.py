"""The database roles of ``stats.roles`` on the real PostgreSQL: each credential can do what its
service needs and nothing more (an attacker holding it gets no further)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from deploy.local.database_roles import role_passwords, url_as
from deploy.local.launcher import ROOT, LocalStack
from export.shadow_requirement import shadow_record
from stats.migrate import migrate
from stats.roles import READER, ROLES, WRITER, grant_statements, role_for
from training.feedback import count_allowed

INSERT_WINDOW = (
    "INSERT INTO window_stats (model_name, model_version, granularity, window_start)"
    " VALUES ('m', '1', 'minute', now())"
)


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def refused(conn: asyncpg.Connection, sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(sql)


# Writes and schema changes that neither service role may make.
DDL = [
    "CREATE TABLE intruder (x int)",
    "ALTER TABLE window_stats ADD COLUMN intruder int",
    "DROP TABLE window_stats",
    "TRUNCATE window_stats",
    "CREATE INDEX intruder ON predictions (worker_id)",
    "DELETE FROM schema_migrations",
    "INSERT INTO schema_migrations (version) VALUES ('9999_intruder')",
]


def test_each_service_has_its_role() -> None:
    assert role_for("stats") is WRITER
    assert role_for("gateway") is READER
    assert role_for("training") is READER
    assert role_for("export") is READER
    assert role_for("workers") is None
    assert role_for("registry_watcher") is None
    assert READER.tables == ("SELECT",)
    assert not {"TRUNCATE", "REFERENCES", "TRIGGER"} & set(WRITER.tables)


def test_grants_name_every_role_and_nothing_for_public() -> None:
    statements = grant_statements("db")
    for role in ROLES:
        assert f'GRANT CONNECT ON DATABASE "db" TO "{role.name}"' in statements
    assert not [s for s in statements if "TO PUBLIC" in s]
    assert 'REVOKE CREATE ON SCHEMA "public" FROM PUBLIC' in statements


async def test_gateway_credential_reads_statistics_and_writes_nothing(
    stack: LocalStack, database_url: str
) -> None:
    async with connected(database_url) as owner:
        await owner.execute(INSERT_WINDOW)
    async with connected(stack.database_url_as(READER.name, database_url)) as conn:
        assert await conn.fetchval("SELECT count(*) FROM window_stats") == 1
        for table in ("predictions", "feedback", "window_latency", "drift_checks",
                      "shadow_predictions", "schema_migrations"):  # fmt: skip
            await conn.fetchval(f"SELECT count(*) FROM {table}")
        await refused(conn, INSERT_WINDOW)
        await refused(conn, "UPDATE window_stats SET predictions = 1000")
        await refused(conn, "DELETE FROM window_stats")
        await refused(conn, "DELETE FROM predictions")
        for sql in DDL:
            await refused(conn, sql)
        await refused(conn, "CREATE TEMPORARY TABLE intruder (x int)")
        assert await conn.fetchval("SELECT predictions FROM window_stats") == 0


async def test_stats_credential_writes_aggregates_but_changes_no_schema(
    stack: LocalStack, database_url: str
) -> None:
    async with connected(stack.database_url_as(WRITER.name, database_url)) as conn:
        await conn.execute(INSERT_WINDOW)
        await conn.execute("UPDATE window_stats SET predictions = predictions + 1")
        assert await conn.fetchval("SELECT predictions FROM window_stats") == 1
        await conn.execute("DELETE FROM window_stats")
        for sql in DDL:
            await refused(conn, sql)
        # Migrating is the owner's: the writer finds nothing pending and so runs no DDL.
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") > 0


async def test_tables_of_later_migrations_are_granted_too(
    stack: LocalStack, database_url: str
) -> None:
    """Default privileges: a table the owner adds later is readable and writable as above."""
    async with connected(database_url) as owner:
        await owner.execute("CREATE TABLE later_table (x int)")
    async with connected(stack.database_url_as(WRITER.name, database_url)) as writer:
        await writer.execute("INSERT INTO later_table VALUES (1)")
    async with connected(stack.database_url_as(READER.name, database_url)) as reader:
        assert await reader.fetchval("SELECT x FROM later_table") == 1
        await refused(reader, "INSERT INTO later_table VALUES (2)")


async def test_roles_cannot_connect_to_a_database_they_were_not_granted(
    stack: LocalStack, database_url: str
) -> None:
    """Connect is granted per database by migrate(), not to everyone."""
    async with connected(database_url) as owner:
        name = database_url.rsplit("/", 1)[1]
        await owner.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM "{READER.name}"')
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(stack.database_url_as(READER.name, database_url))
    await migrate(database_url)  # grants again, idempotently
    async with connected(stack.database_url_as(READER.name, database_url)) as reader:
        assert await reader.fetchval("SELECT count(*) FROM window_stats") == 0


async def test_training_and_export_read_as_the_reader(stack: LocalStack, database_url: str) -> None:
    """Their queries are SELECTs: the reader's credential is enough."""
    reader = stack.database_url_as(READER.name, database_url)
    assert await count_allowed(reader, ("rest", "replay")) == 0
    record = await shadow_record(reader, "reviewstream-sentiment", "1")
    assert record.labelled == 0


def test_roles_command_sets_the_passwords_it_is_given(stack: LocalStack) -> None:
    """compose's init job: ``python -m stats.roles`` as the owner (here with the stack's own
    passwords, so the other tests' credentials stay valid)."""
    passwords = role_passwords(stack.state_dir)
    env = {
        **os.environ,
        "DATABASE_URL": stack.database_url,
        "RS_DB_WRITER_PASSWORD": passwords[WRITER.name],
        "RS_DB_READER_PASSWORD": passwords[READER.name],
    }
    result = subprocess.run(
        [sys.executable, "-m", "stats.roles"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for role in ROLES:
        assert f"database role {role.name} updated" in result.stderr


async def test_a_wrong_password_is_refused(stack: LocalStack, database_url: str) -> None:
    wrong = url_as(database_url, READER.name, "not-the-password")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(wrong)
