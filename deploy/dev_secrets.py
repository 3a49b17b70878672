"""``python -m deploy.dev_secrets compose|k8s-dev``: the secrets a first start needs, made once.

No manifest carries a password or an API key: compose requires them (``${VAR:?}``) and the dev
overlay reads them from git-ignored files. This writes whatever is missing with fresh random
values, never changes what exists, and prints a new admin API key once (only its sha256 is kept).

- ``compose``: ``deploy/compose/.env`` (0600; compose reads it beside compose.yaml) with
  ``RS_POSTGRES_PASSWORD`` (the owner's), ``RS_DB_WRITER_PASSWORD``, ``RS_DB_READER_PASSWORD``
  and ``RS_COMPOSE_API_KEYS_FILE``; ``deploy/compose/secrets/api-keys.json`` (hashes only)
  and the models topic's key pair ``models-signing.pem``/``.pub``; MLflow's passwords under
  ``deploy/compose/mlflow-secrets/``. The services read these as uid 10001 through bind
  mounts: the files are 0644, their folders 0700.
- ``k8s-dev``: under ``deploy/k8s/overlays/dev/secrets/``, ``database.env`` (the Secret's
  ``DATABASE_URL`` of each role), ``api-keys.json``, the models topic's key pair, and
  ``database-roles.yaml``: the
  CloudNativePG cluster's role Secrets (namespace ``databases``; ``kubectl apply -f`` it
  before ``deploy/k8s/external``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import yaml

from deploy.mlflow_access import ensure_password_files, server_secrets
from gateway.auth import KeyFile, KeyRecord, Role, hash_key, new_key
from runtime.signing import new_key_pair
from stats.roles import READER, WRITER

DEPLOY = Path(__file__).resolve().parent
OWNER = "reviewstream"  # the migrating owner of the reviewstream database
K8S_DATABASE = "reviewstream-db-rw.databases.svc:5432/reviewstream"
# The CloudNativePG Secrets (deploy/k8s/external/cloudnativepg.yaml) of each role.
K8S_ROLE_SECRETS = {
    OWNER: "reviewstream-db-owner",
    WRITER.name: "reviewstream-db-writer",
    READER.name: "reviewstream-db-reader",
}

app = typer.Typer(add_completion=False, no_args_is_help=True)


def password() -> str:
    """Hex: safe inside a URL and a shell line without quoting."""
    return secrets.token_hex(24)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """A new file with ``mode`` from the start (never briefly readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def api_key_file(path: Path, name: str) -> str | None:
    """An admin key's hash in a new key file at ``path``; the key itself, once, or None when
    the file exists already. Hashes only, so readable by the container's user (0644)."""
    if path.exists():
        return None
    key = new_key()
    records = KeyFile(keys=[KeyRecord(name=name, role=Role.ADMIN, sha256=hash_key(key))])
    write_private(path, records.model_dump_json(indent=2) + "\n", mode=0o644)
    return key


def signing_key_pair(folder: Path) -> None:
    """The models topic's key pair (``runtime.signing``), when missing."""
    if not (folder / "models-signing.pem").exists():
        new_key_pair(folder / "models-signing.pem", folder / "models-signing.pub")


def compose(folder: Path) -> str | None:
    """Complete ``folder/.env``; returns a new admin key, if one was made."""
    env = folder / ".env"
    wanted: dict[str, Callable[[], str]] = {
        "RS_POSTGRES_PASSWORD": password,
        "RS_DB_WRITER_PASSWORD": password,
        "RS_DB_READER_PASSWORD": password,
        "RS_COMPOSE_API_KEYS_FILE": lambda: "./secrets/api-keys.json",
    }
    have: set[str] = set()
    if env.exists():
        lines = env.read_text().splitlines()
        have = {ln.split("=", 1)[0].strip() for ln in lines if "=" in ln and not ln.startswith("#")}
    missing = "".join(f"{name}={make()}\n" for name, make in wanted.items() if name not in have)
    if not env.exists():
        write_private(env, "# Made by `make compose-secrets`; never commit this file.\n")
    if missing:
        with env.open("a") as file:
            file.write(missing)
    signing_key_pair(folder / "secrets")
    # MLflow's users' passwords, one file each (RS_COMPOSE_MLFLOW_SECRETS_DIR's default).
    ensure_password_files(folder / "mlflow-secrets")
    server_secrets(folder / "mlflow-secrets")
    key = api_key_file(folder / "secrets" / "api-keys.json", "compose-admin")
    readable_by_containers(folder / "secrets", folder / "mlflow-secrets")
    return key


def readable_by_containers(*folders: Path) -> None:
    """Compose mounts each secret file as it is (a bind mount: the file's own mode applies),
    and the services read them as uid 10001, not the files' owner: the files are 0644 and the
    folders 0700, so that no one else on the host reaches them."""
    for folder in folders:
        folder.chmod(0o700)
        for path in folder.iterdir():
            path.chmod(0o644)


def k8s_dev(overlay: Path) -> str | None:
    """The dev overlay's secrets files; returns a new admin key, if one was made."""
    folder = overlay / "secrets"
    if not (folder / "database.env").exists():
        passwords = {role: password() for role in K8S_ROLE_SECRETS}
        urls = {"DATABASE_URL": OWNER, "DATABASE_URL_WRITER": WRITER.name}
        urls["DATABASE_URL_READER"] = READER.name
        write_private(
            folder / "database.env",
            "".join(
                f"{key}=postgresql://{role}:{passwords[role]}@{K8S_DATABASE}\n"
                for key, role in urls.items()
            ),
        )
        role_secrets = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/basic-auth",
                "metadata": {
                    "name": name,
                    "namespace": "databases",
                    "labels": {"cnpg.io/reload": "true"},  # CloudNativePG follows a change
                },
                "stringData": {"username": role, "password": passwords[role]},
            }
            for role, name in K8S_ROLE_SECRETS.items()
        ]
        write_private(folder / "database-roles.yaml", yaml.safe_dump_all(role_secrets))
    signing_key_pair(folder)
    return api_key_file(folder / "api-keys.json", "dev-admin")


def _announce(key: str | None, where: str) -> None:
    if key is None:
        typer.echo(f"{where}: secrets already there, nothing changed", err=True)
        return
    typer.echo(f"{where}: secrets written; the admin API key (shown once, keep it):", err=True)
    typer.echo(key)


@app.command("compose")
def compose_command(
    folder: Annotated[Path, typer.Option(help="beside compose.yaml")] = DEPLOY / "compose",
) -> None:
    """Write deploy/compose/.env and secrets/api-keys.json where missing."""
    _announce(compose(folder), str(folder))


@app.command("k8s-dev")
def k8s_dev_command(
    overlay: Annotated[Path, typer.Option(help="the dev overlay")] = DEPLOY
    / "k8s"
    / "overlays"
    / "dev",
) -> None:
    """Write the dev overlay's secrets files where missing."""
    _announce(k8s_dev(overlay), str(overlay))


if __name__ == "__main__":
    app()
