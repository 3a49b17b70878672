"""The local broker's SCRAM users: one per principal, its password generated once and kept
in a file only the owner can read (``<state>/kafka/users/<principal>``)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

MECHANISM = "SCRAM-SHA-512"


def ensure_passwords(folder: Path, principals: Iterable[str]) -> tuple[dict[str, str], set[str]]:
    """Every principal's password, generating the missing ones; and the names generated now."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    passwords: dict[str, str] = {}
    new: set[str] = set()
    for name in principals:
        path = folder / name
        if not path.exists():
            # O_EXCL and 0600 from the start: never readable by others, not even for a moment.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(24))  # [A-Za-z0-9_-]: safe in --add-scram
            new.add(name)
        passwords[name] = path.read_text().strip()
    return passwords, new


def scram_arguments(passwords: dict[str, str]) -> list[str]:
    """``kafka-storage format`` arguments that put the users into the first metadata."""
    return [
        arg
        for name, password in sorted(passwords.items())
        for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")
    ]
