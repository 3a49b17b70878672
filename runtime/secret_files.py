"""Secrets read from files: a mounted Kubernetes Secret, a compose secret, or a file the local
stack generated. One reader, so every process refuses an unreadable or empty one the same way."""

from __future__ import annotations

from pathlib import Path


class SecretFileError(ValueError):
    """A secret file that cannot be used; the message names the file and says why."""


def read_secret_file(path: Path) -> str:
    """The secret in ``path``, stripped of the whitespace editors and ``echo`` leave around it."""
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise SecretFileError(f"cannot read the secret file {path}: {exc}") from exc
    if not secret:
        raise SecretFileError(f"the secret file {path} is empty")
    return secret
