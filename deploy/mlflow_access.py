"""Who may do what in MLflow: the users, their roles and the roles' grants, as one table, and
the one-shot provisioning that makes MLflow's basic-auth store match it.

MLflow runs its ``basic-auth`` app (``mlflow server --app-name basic-auth``) with
``default_permission = NO_PERMISSIONS``: a user sees only what a role below grants. Every grant
is on all resources of a type (pattern ``*``), so a new experiment or model needs no new grant.

What MLflow 3.17's checks (``mlflow/server/auth/__init__.py``) make possible, and what not:

- registering a version (CreateModelVersion) and moving an alias (SetRegisteredModelAlias)
  both need ``update`` (EDIT) on the registered model: MLflow cannot give one without the
  other. So the trainer can move an alias (``python -m training train`` promotes in the same
  process anyway) and the release role can register a version of a run it can read; what
  differs is that the release role may not write runs in the experiments (READ).
- deleting an alias (ending a shadow, ``python -m export shadow --stop``) needs ``delete``
  (MANAGE) on the model, which would also let the holder delete the model: no role has it;
  ending a shadow is the admin's.
- with workspaces off, any signed-in user may create a *new* experiment or registered model
  (and manages what it created), but cannot touch the ones it has no grant on.

Passwords are never in this table: each user's lies in a file (a Kubernetes Secret mounted as
files, compose secrets, or generated at first start by the local stack), and provisioning makes
the store agree with the files. Run before each start of the server, against its auth database:
``python -m deploy.mlflow_access provision --passwords DIR --config basic_auth.ini
[--database-uri URI]``; ``python -m deploy.mlflow_access generate DIR`` makes the files.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.secret_files import SecretFileError, read_secret_file

if TYPE_CHECKING:  # the store pulls in Flask and SQLAlchemy: only where it is used
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

log = logging.getLogger("mlflow_access")

ADMIN = "admin"
# With workspaces off MLflow keeps every role in its default workspace.
WORKSPACE = "default"
READ, EDIT = "READ", "EDIT"


@dataclass(frozen=True)
class Role:
    description: str
    # resource type (MLflow's: experiment, registered_model, ...) -> permission on all of them
    grants: Mapping[str, str]


ROLES: dict[str, Role] = {
    "reader": Role(
        "reads runs, artifacts and the registry: nothing else",
        {"experiment": READ, "registered_model": READ},
    ),
    "trainer": Role(
        "creates runs and registers versions (MLflow lets EDIT move aliases too)",
        {"experiment": EDIT, "registered_model": EDIT},
    ),
    "release": Role(
        "moves aliases and tags versions; reads runs, writes none",
        {"experiment": READ, "registered_model": EDIT},
    ),
}

# user -> role. One user per process kind, so a leaked password is one process's.
USERS: dict[str, str] = {
    "people": "reader",  # the UI, for people; admin for anything else
    "worker": "reader",  # workers: read the registry, download bundles
    "trainer": "trainer",  # python -m training (train, retrain, tune)
    "release": "release",  # python -m export promote / rollback / shadow
    # The watcher tags what it ships or refuses and rolls back on probation: an alias move.
    "watcher": "release",
}

# What mlflow's auth config needs besides the admin: set by the operator or the local stack.
AUTH_CONFIG = """\
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = {database_uri}
admin_username = {admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
# Checking a password is a PBKDF2 hash (tens of ms): a good credential is trusted for this long
# in each server worker (a password changed through the API is dropped at once).
auth_cache_ttl_seconds = {cache_ttl_s}
"""


class AccessError(RuntimeError):
    """A password file is missing or unusable; the message names it."""


def auth_config(database_uri: str, *, cache_ttl_s: int = 60) -> str:
    return AUTH_CONFIG.format(database_uri=database_uri, admin=ADMIN, cache_ttl_s=cache_ttl_s)


def ensure_password_files(directory: Path, users: list[str] | None = None) -> dict[str, Path]:
    """A password file (0600, in a 0700 folder) for the admin and each user, made once with a
    random password; later calls keep what is there. Returns user -> file."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    files = {}
    for user in users or [ADMIN, *USERS]:
        files[user] = ensure_secret_file(directory / user)
    return files


def ensure_secret_file(path: Path) -> Path:
    """A file (0600) holding a random secret, made if missing; an existing one is kept."""
    if not path.exists():
        # O_EXCL and 0600 from the start: never readable by others, never overwritten.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    return path


def ensure_fernet_key_file(path: Path) -> Path:
    """A file (0600) holding a Fernet key, made if missing: MLflow encrypts the webhook secrets
    it stores with ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY`` (one key for every server process
    and restart, or a stored secret cannot be read back)."""
    if not path.exists():
        from cryptography.fernet import Fernet

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode())
    return path


def server_secrets(directory: Path) -> None:
    """The MLflow server's own secrets beside the passwords, made if missing: the UI's
    session key, the webhook secrets' encryption key, and the secret the registry watcher's
    webhook is signed with (shared by the server's admin job and the watcher)."""
    ensure_secret_file(directory / "flask_secret_key")
    ensure_fernet_key_file(directory / "webhook_encryption_key")
    ensure_secret_file(directory / "webhook_secret")


def provision(store: SqlAlchemyStore, passwords: Mapping[str, str]) -> None:
    """Make the auth store match :data:`ROLES` and :data:`USERS`, with ``passwords``
    (user -> password, the admin's included). Idempotent: run at every start."""
    missing = sorted({ADMIN, *USERS} - set(passwords))
    if missing:
        raise AccessError(f"no password for the MLflow users {', '.join(missing)}")
    _user(store, ADMIN, passwords[ADMIN], is_admin=True)
    role_ids = {name: _role(store, name, role) for name, role in ROLES.items()}
    for user, role in USERS.items():
        user_id = _user(store, user, passwords[user], is_admin=False)
        assigned = {r.id for r in store.list_user_roles(user_id)}
        for other in assigned & set(role_ids.values()) - {role_ids[role]}:
            store.unassign_role_from_user(user_id, other)
        if role_ids[role] not in assigned:
            store.assign_role_to_user(user_id, role_ids[role])


def _user(store: SqlAlchemyStore, name: str, password: str, *, is_admin: bool) -> int:
    if not store.has_user(name, use_primary=True):
        log.info("creating the MLflow user %s", name)
        return int(store.create_user(name, password, is_admin=is_admin).id)
    # The file is the truth: a password rotated in the Secret (or file) is applied here.
    if not store.authenticate_user(name, password, use_primary=True):
        log.info("the password of MLflow user %s changed: updating it", name)
        store.update_user(name, password=password)
    if store.get_user(name).is_admin != is_admin:
        store.update_user(name, is_admin=is_admin)
    return int(store.get_user(name).id)


def _role(store: SqlAlchemyStore, name: str, role: Role) -> int:
    from mlflow.exceptions import MlflowException

    try:
        found = store.get_role_by_name(WORKSPACE, name)
    except MlflowException:
        found = store.create_role(name, WORKSPACE, role.description)
    have = {(p.resource_type, p.resource_pattern): p for p in store.list_role_permissions(found.id)}
    want = {(kind, "*"): permission for kind, permission in role.grants.items()}
    for key, grant in have.items():
        if key not in want:
            store.remove_role_permission(grant.id)
        elif grant.permission != want[key]:
            store.update_role_permission(grant.id, want[key])
    for (kind, pattern), permission in want.items():
        if (kind, pattern) not in have:
            store.add_role_permission(found.id, kind, pattern, permission)
    return int(found.id)


def provision_from_files(config_path: Path, password_dir: Path) -> None:
    """Provision the auth database that ``config_path`` (mlflow's basic_auth.ini) names, with
    the passwords in ``password_dir`` (one file per user, named after it)."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    config = configparser.ConfigParser()
    if not config.read(config_path):
        raise AccessError(f"cannot read the MLflow auth config {config_path}")
    try:
        passwords = {user: read_secret_file(password_dir / user) for user in [ADMIN, *USERS]}
    except SecretFileError as exc:
        raise AccessError(f"no usable MLflow password: {exc}") from exc
    store = SqlAlchemyStore()
    store.init_db(config["mlflow"]["database_uri"])  # type: ignore[no-untyped-call]
    provision(store, passwords)


def write_config(path: Path, database_uri: str) -> Path:
    """MLflow's auth config for ``database_uri`` (0600: the URI may hold a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(auth_config(database_uri))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.mlflow_access",
        description="MLflow's users and roles (deploy/mlflow_access.py).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser(
        "generate",
        help="write a random password file per user (and the admin) into DIR, and the "
        "server's flask_secret_key, webhook_encryption_key and webhook_secret, once",
    )
    generate.add_argument("dir", type=Path)
    provision_cmd = commands.add_parser(
        "provision", help="make the auth database match the table, with the passwords in DIR"
    )
    provision_cmd.add_argument(
        "--passwords", type=Path, required=True, help="one password file per user, named after it"
    )
    provision_cmd.add_argument(
        "--config",
        type=Path,
        required=True,
        help="mlflow's basic_auth.ini (MLFLOW_AUTH_CONFIG_PATH)",
    )
    provision_cmd.add_argument(
        "--database-uri",
        help="write --config first, for this auth database (default: use the --config given)",
    )
    args = parser.parse_args(argv)
    if args.command == "generate":
        for user, path in ensure_password_files(args.dir).items():
            print(f"{user}: {path}")
        server_secrets(args.dir)
        return 0
    try:
        if args.database_uri:
            write_config(args.config, args.database_uri)
        provision_from_files(args.config, args.passwords)
    except AccessError as exc:
        log.error("%s", exc)
        return 2
    log.info("MLflow users and roles provisioned: %s", ", ".join(sorted(USERS)))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
