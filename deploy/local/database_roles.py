"""The local stack's database roles (``stats.roles``): each service connects as its own.

The passwords are made on the first start and kept in 0600 files under the state folder
(``secrets/postgres-<role>.password``); ``deploy.local.postgres`` makes the roles with them, and
each service started by ``python -m deploy.local`` gets ``DATABASE_URL`` as its role.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

from stats.roles import READER, ROLES, role_for

# Started by the stack beside the services: the first start's model reads as export does.
_READS_AS = {"bootstrap": READER}
_DATABASE_VARIABLES = ("DATABASE_URL", "RS_DATABASE_URL")


def password_file(state_dir: Path, role: str) -> Path:
    return state_dir / "secrets" / f"postgres-{role}.password"


def role_passwords(state_dir: Path) -> dict[str, str]:
    """Each role's password, made now where its file is missing (readable by its owner only)."""
    passwords = {}
    for role in ROLES:
        path = password_file(state_dir, role.name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made on an earlier start (or just now by another part of the stack)
        else:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(24))
        passwords[role.name] = path.read_text().strip()
    return passwords


def url_as(url: str, role: str, password: str) -> str:
    """``url`` with ``role`` and ``password`` in place of its user and password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(
        netloc=f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
    ).geturl()


def service_env(
    package: str, env: Mapping[str, str], database_url: str, state_dir: Path
) -> dict[str, str]:
    """``env`` for ``package``: ``DATABASE_URL`` as its own role, and none at all for a package
    that does not use the database."""
    out = {k: v for k, v in env.items() if k not in _DATABASE_VARIABLES}
    role = _READS_AS.get(package) or role_for(package)
    if role is None:
        return out
    out["DATABASE_URL"] = url_as(database_url, role.name, role_passwords(state_dir)[role.name])
    if package == "stats":
        out["RS_STATS_MIGRATE"] = "false"  # the stack migrates as the owner; the writer waits
    return out
