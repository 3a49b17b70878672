"""The local stack's database credentials: made once, private, and one role per service."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import urlsplit

from deploy.local.database_roles import password_file, role_passwords, service_env
from stats.roles import READER, ROLES, WRITER

OWNER_URL = "postgresql://reviewstream:owner-secret@127.0.0.1:5433/reviewstream"
ENV = {"DATABASE_URL": OWNER_URL, "RS_DATABASE_URL": OWNER_URL, "PATH": "/bin"}


def test_passwords_are_made_once_and_readable_by_their_owner_only(tmp_path: Path) -> None:
    first = role_passwords(tmp_path)
    assert set(first) == {role.name for role in ROLES}
    assert len(set(first.values())) == len(ROLES), "every role has its own password"
    for role in ROLES:
        path = password_file(tmp_path, role.name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(first[role.name]) >= 24
    assert stat.S_IMODE(password_file(tmp_path, WRITER.name).parent.stat().st_mode) == 0o700
    assert role_passwords(tmp_path) == first, "a later start reuses them"
    assert role_passwords(tmp_path / "other") != first, "another stack gets its own"


def test_each_service_connects_as_its_own_role(tmp_path: Path) -> None:
    passwords = role_passwords(tmp_path)
    for package, role in [("stats", WRITER), ("gateway", READER), ("bootstrap", READER)]:
        env = service_env(package, ENV, OWNER_URL, tmp_path)
        url = urlsplit(env["DATABASE_URL"])
        assert (url.username, url.password) == (role.name, passwords[role.name]), package
        assert (url.hostname, url.port, url.path) == ("127.0.0.1", 5433, "/reviewstream")
        assert "RS_DATABASE_URL" not in env, "no second variable keeps the owner's URL"
        assert "owner-secret" not in str(env)
    assert service_env("stats", ENV, OWNER_URL, tmp_path)["RS_STATS_MIGRATE"] == "false"
    for package in ("workers", "registry_watcher"):
        env = service_env(package, ENV, OWNER_URL, tmp_path)
        assert not {"DATABASE_URL", "RS_DATABASE_URL"} & set(env), package
        assert env["PATH"] == "/bin"
