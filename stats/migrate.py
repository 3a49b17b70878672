"""Versioned schema migrations: numbered SQL files applied in order, recorded in a table.

Each file runs in its own transaction together with its ``schema_migrations`` row, under an
advisory lock, so concurrent starters apply each version exactly once.
Migrating also grants the database's roles their privileges (``stats.roles``), under the same
lock; :func:`migrate` grants every time: grants are per database, and a role may be made after
the schema. A caller that is not the owner (the stats processor as its writer role) finds
nothing pending and runs no DDL.
Run alone with ``python -m stats.migrate``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg

from runtime.database import DatabaseSettings
from stats.connect import connect
from stats.roles import MIGRATIONS_TABLE, grant

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x7265_7669_6577  # "review": any constant shared by every starter


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """The versions not applied yet (all of them before the first migration); reads only."""
    if await conn.fetchval("SELECT to_regclass($1)", MIGRATIONS_TABLE) is None:
        return [path.stem for path in migration_files()]
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [path.stem for path in migration_files() if path.stem not in done]


async def apply_migrations(conn: asyncpg.Connection, *, always_grant: bool = False) -> list[str]:
    """Apply every migration not yet recorded; returns the versions applied now. The roles'
    grants go with them (``always_grant``: even when none is pending), under the same lock:
    two GRANTs on one object at once fail ("tuple concurrently updated")."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        pending = set(await pending_migrations(conn))
        if not pending:
            if always_grant:
                await grant(conn)
            return []  # no DDL at all: a role without CREATE gets here too
        # Before: default privileges give the roles each table as it is made, so a service
        # waiting on the schema can read it at once; after: what is special about the
        # migrations table itself (read-only for them).
        await grant(conn)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = []
        for path in migration_files():
            version = path.stem
            if version not in pending:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            log.info("applied migration %s", version)
            applied.append(version)
        await grant(conn)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def migrate(url: str) -> list[str]:
    """Migrate the database of ``url`` (its owner's) and grant its roles their privileges."""
    conn = await connect(url)
    try:
        return await apply_migrations(conn, always_grant=True)
    finally:
        await conn.close()


async def main() -> None:
    applied = await migrate(DatabaseSettings().url.get_secret_value())
    log.info("schema up to date (%d migrations applied now)", len(applied))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
