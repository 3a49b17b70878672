"""The MLflow credential of this process: user name and password, the password from a file.

MLflow's client signs every request with ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``. A Kubernetes Secret mounted as a file (or the local stack's
generated password file) is named by ``MLFLOW_TRACKING_PASSWORD_FILE`` instead, so the password
is in no manifest and no ``env`` listing: :func:`load_password_file`, called first thing by each
process that talks to MLflow, reads it into the variable MLflow reads. :func:`basic_auth_header`
is the same credential for the few plain HTTP calls made without MLflow's client.
"""

from __future__ import annotations

import base64
import os
from collections.abc import MutableMapping
from pathlib import Path

from runtime.secret_files import SecretFileError, read_secret_file

# The names of variables, not their values.
USERNAME = "MLFLOW_TRACKING_USERNAME"
PASSWORD = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105
PASSWORD_FILE = "MLFLOW_TRACKING_PASSWORD_FILE"  # noqa: S105


class CredentialError(RuntimeError):
    """The password file named cannot be used; the message says which and why."""


def load_password_file(environ: MutableMapping[str, str] | None = None) -> None:
    """Set ``MLFLOW_TRACKING_PASSWORD`` from ``MLFLOW_TRACKING_PASSWORD_FILE`` when that is set.

    The file wins over a password already in the environment: it is the one a rotated Secret
    updates.
    """
    env = os.environ if environ is None else environ
    name = env.get(PASSWORD_FILE)
    if not name:
        return
    if not env.get(USERNAME):
        raise CredentialError(f"{PASSWORD_FILE} is set but {USERNAME} is not")
    try:
        env[PASSWORD] = read_secret_file(Path(name))
    except SecretFileError as exc:
        raise CredentialError(f"{PASSWORD_FILE}: {exc}") from exc


def basic_auth_header(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """``{"Authorization": "Basic ..."}`` for this process's credential; ``{}`` without one."""
    env = os.environ if environ is None else environ
    load_password_file(env)
    user, password = env.get(USERNAME), env.get(PASSWORD)
    if not user or password is None:
        return {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
