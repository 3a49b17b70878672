"""The MLflow tracking server: a SQLite store and an artifact folder, under the state folder.

Kept light for two cores: one worker, no background job runner, no access log.
Sign-in required: MLflow's basic-auth app, its users and roles those of ``deploy.mlflow_access``
(its own SQLite database, ``auth.db``), each user's password generated at the first start into
``credentials/<user>`` (0600) beside it, the admin's included: never a default password.
Registry webhooks (``deploy.mlflow_webhook``) may post over plain HTTP to this machine's
addresses (MLflow refuses both by default: a local stack's watcher listens on loopback), their
secrets stored under a Fernet key made once in the state folder, and a new webhook is seen
within a second (MLflow caches the list of webhooks per event, 60 s by default: a test or a
bench run that adds its own watcher's webhook would otherwise miss the first moves).
Run alone with ``python -m deploy.local.mlflow_server``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from deploy import mlflow_access
from deploy.local.settings import StackSettings
from runtime.secret_files import read_secret_file

# A checked password is trusted this long by the server (MLflow's own cache): see the README.
AUTH_CACHE_TTL_S = 60
WEBHOOK_CACHE_TTL_S = 1


def state_of(settings: StackSettings) -> Path:
    return (settings.state_dir / "mlflow").resolve()


def credentials_dir(settings: StackSettings) -> Path:
    """One password file per MLflow user (deploy.mlflow_access.USERS and the admin)."""
    return state_of(settings) / "credentials"


def auth_config_path(settings: StackSettings) -> Path:
    return state_of(settings) / "basic_auth.ini"


def prepare_auth(settings: StackSettings) -> Path:
    """The auth config, the password files (made once) and the users in the auth database;
    returns the config's path. Done before the server starts, so it never answers a request
    before its users exist."""
    state = state_of(settings)
    state.mkdir(parents=True, exist_ok=True)
    mlflow_access.ensure_password_files(credentials_dir(settings))
    config = auth_config_path(settings)
    config.write_text(
        mlflow_access.auth_config(f"sqlite:///{state / 'auth.db'}", cache_ttl_s=AUTH_CACHE_TTL_S)
    )
    mlflow_access.provision_from_files(config, credentials_dir(settings))
    return config


def webhook_secret_path(settings: StackSettings) -> Path:
    """The secret the watcher's webhook is signed with (the watcher's and the admin job's)."""
    return mlflow_access.ensure_secret_file(state_of(settings) / "webhook_secret")


def webhook_env(settings: StackSettings) -> dict[str, str]:
    state = state_of(settings)
    state.mkdir(parents=True, exist_ok=True)
    key = mlflow_access.ensure_fernet_key_file(state / "webhook_encryption_key")
    return {
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": read_secret_file(key),
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": str(WEBHOOK_CACHE_TTL_S),
    }


def command(settings: StackSettings) -> list[str]:
    state = state_of(settings)
    state.mkdir(parents=True, exist_ok=True)
    host, port = settings.mlflow_address
    return [
        sys.executable, "-m", "mlflow", "server",
        "--app-name", "basic-auth",
        "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
        "--artifacts-destination", str(state / "artifacts"),
        "--serve-artifacts",
        "--host", host,
        "--port", str(port),
        "--workers", "1",
        # The workers and the watcher ask the registry every few seconds: no line per request.
        "--uvicorn-opts", "--no-access-log",
    ]  # fmt: skip


# MLflow's server imports a Starlette module that Starlette marks as deprecated: MLflow's to fix,
# and nothing a user of the stack can act on, so it stays out of the start-up screen.
QUIET_WARNINGS = "ignore:starlette.middleware.wsgi is deprecated"


def main() -> None:
    settings = StackSettings()
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(prepare_auth(settings))
    # Signs the UI's CSRF tokens and sessions: made once, kept beside the passwords.
    key = mlflow_access.ensure_secret_file(state_of(settings) / "flask_secret_key")
    os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"] = read_secret_file(key)
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    os.environ.update(webhook_env(settings))
    given = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{given},{QUIET_WARNINGS}" if given else QUIET_WARNINGS
    argv = command(settings)
    os.execv(argv[0], argv)  # noqa: S606 - become the server, so signals reach it directly


if __name__ == "__main__":
    main()
