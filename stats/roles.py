"""Who may do what in the statistics database: the one table of its roles and their grants.

=====================  ===============================  ==========================================
role                   used by                          may
=====================  ===============================  ==========================================
owner (the URL that    migrations: the init job, the    own the schema: every DDL and DML
migrates)              local stack, ``stats.migrate``
reviewstream_writer    the stats processor              SELECT, INSERT, UPDATE, DELETE on the
                                                        tables (``schema_migrations``: SELECT)
reviewstream_reader    the gateway, training, export    SELECT
=====================  ===============================  ==========================================

Nobody else may connect, and nobody but the owner may create anything in the schema: the
writer and the reader can neither CREATE, ALTER, DROP nor TRUNCATE.

Roles are cluster-wide and made by each deployment with their passwords (the local stack,
compose's init job through ``python -m stats.roles``, CloudNativePG's managed roles); grants are
per database, so every ``stats.migrate.migrate`` grants them again (idempotent), and default
privileges give them the tables a later migration adds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.database import DatabaseSettings
from stats.connect import connect

log = logging.getLogger(__name__)

SCHEMA = "public"
# Written by migrations only: every other role reads it (the processor waits on it).
MIGRATIONS_TABLE = "schema_migrations"


@dataclass(frozen=True)
class Role:
    name: str
    used_by: tuple[str, ...]  # the packages that connect as this role
    tables: tuple[str, ...]  # privileges on every table of the schema
    sequences: tuple[str, ...] = ()  # and on every sequence


WRITER = Role(
    "reviewstream_writer",
    used_by=("stats",),
    tables=("SELECT", "INSERT", "UPDATE", "DELETE"),
    sequences=("USAGE", "SELECT"),
)
READER = Role("reviewstream_reader", used_by=("gateway", "training", "export"), tables=("SELECT",))
ROLES = (WRITER, READER)


def role_for(package: str) -> Role | None:
    """The role ``package`` connects as; None: it does not use the database."""
    return next((role for role in ROLES if package in role.used_by), None)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant_statements(
    database: str, roles: tuple[Role, ...] = ROLES, *, migrations_table: bool = True
) -> list[str]:
    """The SQL that gives ``roles`` exactly their privileges in ``database`` (idempotent);
    ``migrations_table``: whether ``schema_migrations`` exists yet."""
    db, schema = _ident(database), _ident(SCHEMA)
    statements = [
        # PostgreSQL before 15 lets everyone create in public, and every version lets everyone
        # connect and make temporary tables: only the roles here connect, only the owner creates.
        f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC",
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
    ]
    for role in roles:
        who = _ident(role.name)
        tables = ", ".join(role.tables)
        statements += [
            f"GRANT CONNECT ON DATABASE {db} TO {who}",
            f"GRANT USAGE ON SCHEMA {schema} TO {who}",
            f"GRANT {tables} ON ALL TABLES IN SCHEMA {schema} TO {who}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {tables} ON TABLES TO {who}",
        ]
        if migrations_table:
            statements += [
                f"REVOKE ALL ON {_ident(MIGRATIONS_TABLE)} FROM {who}",
                f"GRANT SELECT ON {_ident(MIGRATIONS_TABLE)} TO {who}",
            ]
        if role.sequences:
            sequences = ", ".join(role.sequences)
            statements += [
                f"GRANT {sequences} ON ALL SEQUENCES IN SCHEMA {schema} TO {who}",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
                f"GRANT {sequences} ON SEQUENCES TO {who}",
            ]
    return statements


async def grant(conn: asyncpg.Connection) -> list[str]:
    """Grant each existing role its privileges in the connected database, as its owner; returns
    the roles that do not exist (their deployment has not made them: it connects as the owner)."""
    names = [role.name for role in ROLES]
    found = {r["rolname"] for r in await conn.fetch(_EXISTING, names)}
    missing = [name for name in names if name not in found]
    if missing:
        log.warning("database roles missing, not granted: %s", ", ".join(missing))
    database: str = await conn.fetchval("SELECT current_database()")
    table = await conn.fetchval("SELECT to_regclass($1)", MIGRATIONS_TABLE)
    present = tuple(role for role in ROLES if role.name in found)
    async with conn.transaction():
        for statement in grant_statements(database, present, migrations_table=table is not None):
            await conn.execute(statement)
    return missing


_EXISTING = "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])"


async def ensure_login_roles(conn: asyncpg.Connection, passwords: Mapping[str, str]) -> None:
    """Make each role of ``passwords`` (a role name -> its password) able to log in with it:
    created when missing, its password set again otherwise. Needs CREATEROLE (a superuser)."""
    known = {role.name for role in ROLES}
    for name, password in passwords.items():
        if name not in known:
            raise ValueError(f"unknown database role {name!r}; known: {sorted(known)}")
        if not password:
            raise ValueError(f"empty password for database role {name!r}")
        exists = bool(await conn.fetch(_EXISTING, [name]))
        # format() quotes server-side: a password is never pasted into SQL here.
        statement: str = await conn.fetchval(
            "SELECT format('%s ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',"
            " $1::text, $2::text, $3::text)",
            "ALTER" if exists else "CREATE",
            name,
            password,
        )
        await conn.execute(statement)
        log.info("database role %s %s", name, "updated" if exists else "created")


class RoleSettings(BaseSettings):
    """``python -m stats.roles``: the login roles' passwords, and the owner's URL that makes
    them (compose's init job; CloudNativePG makes its own)."""

    model_config = SettingsConfigDict(env_prefix="RS_DB_", frozen=True)

    writer_password: SecretStr
    reader_password: SecretStr
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    def passwords(self) -> dict[str, str]:
        return {
            WRITER.name: self.writer_password.get_secret_value(),
            READER.name: self.reader_password.get_secret_value(),
        }


async def main() -> None:
    settings = RoleSettings()
    conn = await connect(settings.database.url.get_secret_value())
    try:
        await ensure_login_roles(conn, settings.passwords())
    finally:
        await conn.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
