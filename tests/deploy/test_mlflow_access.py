"""MLflow signs everyone in, and each role may do what deploy.mlflow_access grants, no more.

On the session's real server (basic-auth app): each credential (none, a wrong password, each
user) tries each action over MLflow's REST API, and the answer is checked against the table
below, written here by hand from the design, not derived from the code under test.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from deploy import mlflow_access
from deploy.local.launcher import LocalStack
from runtime.mlflow_credentials import (
    CredentialError,
    basic_auth_header,
    load_password_file,
)

API = "/api/2.0/mlflow"
ACTIONS = ("read_registry", "read_run", "create_run", "register_version", "move_alias")
# user -> the actions it may do; every other action is refused (403). MLflow gates registering
# a version and moving an alias on the same EDIT of the model: whoever may do one may do the
# other (the release role registers only runs it can read; it cannot write any).
RELEASE = {"read_registry", "read_run", "register_version", "move_alias"}
ALLOWED: dict[str, set[str]] = {
    "admin": set(ACTIONS),
    "people": {"read_registry", "read_run"},
    "worker": {"read_registry", "read_run"},
    "trainer": set(ACTIONS),
    "release": RELEASE,
    "watcher": RELEASE,
}


class Registry:
    """One model with one version of a run, made by the admin, for the others to try."""

    def __init__(self, stack: LocalStack) -> None:
        client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
        self.name = f"access-{uuid.uuid4().hex[:8]}"
        self.experiment_id = client.create_experiment(self.name)
        self.run_id = client.create_run(self.experiment_id).info.run_id
        client.create_registered_model(self.name)
        self.source = f"runs:/{self.run_id}/model"
        client.create_model_version(self.name, self.source, run_id=self.run_id)

    def attempt(self, http: httpx.Client, action: str) -> int:
        if action == "read_registry":
            reply = http.get(f"{API}/registered-models/get", params={"name": self.name})
        elif action == "read_run":
            reply = http.get(f"{API}/runs/get", params={"run_id": self.run_id})
        elif action == "create_run":
            reply = http.post(f"{API}/runs/create", json={"experiment_id": self.experiment_id})
        elif action == "register_version":
            body = {"name": self.name, "source": self.source, "run_id": self.run_id}
            reply = http.post(f"{API}/model-versions/create", json=body)
        else:
            body = {"name": self.name, "alias": "production", "version": "1"}
            reply = http.post(f"{API}/registered-models/alias", json=body)
        return reply.status_code


@pytest.fixture(scope="module")
def registry(stack: LocalStack) -> Registry:
    return Registry(stack)


def signed_in(stack: LocalStack, user: str, password: str | None = None) -> httpx.Client:
    if password is None:
        password = stack.mlflow_password_file(user).read_text().strip()
    return httpx.Client(base_url=stack.mlflow_uri, auth=(user, password), timeout=30)


@pytest.mark.parametrize("user", sorted(ALLOWED))
def test_each_user_may_do_what_its_role_grants_and_nothing_else(
    stack: LocalStack, registry: Registry, user: str
) -> None:
    with signed_in(stack, user) as http:
        answers = {action: registry.attempt(http, action) for action in ACTIONS}
    expected = {action: 200 if action in ALLOWED[user] else 403 for action in ACTIONS}
    assert answers == expected


def test_the_table_names_every_user_of_the_design(stack: LocalStack) -> None:
    assert set(ALLOWED) == {mlflow_access.ADMIN, *mlflow_access.USERS}


@pytest.mark.parametrize("how", ["no credential", "wrong password", "unknown user"])
def test_without_a_valid_credential_every_action_is_refused(
    stack: LocalStack, registry: Registry, how: str
) -> None:
    if how == "no credential":
        http = httpx.Client(base_url=stack.mlflow_uri, timeout=30)
    elif how == "wrong password":
        http = signed_in(stack, "trainer", "not-the-password")
    else:
        http = signed_in(stack, "mallory", "whatever-it-is")
    with http:
        assert {action: registry.attempt(http, action) for action in ACTIONS} == dict.fromkeys(
            ACTIONS, 401
        )


def test_the_admin_password_is_generated_and_kept_private(stack: LocalStack) -> None:
    path = stack.mlflow_password_file(mlflow_access.ADMIN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    password = path.read_text().strip()
    assert len(password) >= 24
    assert password != "password1234"  # what MLflow's basic_auth.ini shipped before 3.x
    for default in ("password1234", "admin", "password"):
        with signed_in(stack, "admin", default) as http:
            assert http.get(f"{API}/experiments/search?max_results=1").status_code == 401
    with signed_in(stack, "admin") as http:
        assert http.get(f"{API}/experiments/search?max_results=1").status_code == 200


def test_provisioning_is_idempotent_and_follows_a_rotated_password_file(tmp_path: Path) -> None:
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    config = tmp_path / "basic_auth.ini"
    config.write_text(mlflow_access.auth_config(f"sqlite:///{tmp_path / 'auth.db'}"))
    passwords = tmp_path / "credentials"
    mlflow_access.ensure_password_files(passwords)
    mlflow_access.provision_from_files(config, passwords)
    mlflow_access.provision_from_files(config, passwords)  # again: nothing new, no error

    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{tmp_path / 'auth.db'}")  # type: ignore[no-untyped-call]
    for user, role in mlflow_access.USERS.items():
        roles = store.list_user_roles(store.get_user(user).id)
        assert [r.name for r in roles] == [role]
        grants = {(p.resource_type, p.resource_pattern): p.permission for p in roles[0].permissions}
        assert grants == {
            (kind, "*"): level for kind, level in mlflow_access.ROLES[role].grants.items()
        }
    assert store.get_user("admin").is_admin
    assert not store.get_user("trainer").is_admin

    old = (passwords / "worker").read_text()
    (passwords / "worker").write_text("a-rotated-password-of-some-length\n")
    mlflow_access.provision_from_files(config, passwords)
    assert store.authenticate_user("worker", "a-rotated-password-of-some-length")
    assert not store.authenticate_user("worker", old)


def test_provisioning_without_a_password_file_names_it(tmp_path: Path) -> None:
    config = tmp_path / "basic_auth.ini"
    config.write_text(mlflow_access.auth_config(f"sqlite:///{tmp_path / 'auth.db'}"))
    mlflow_access.ensure_password_files(tmp_path / "credentials")
    (tmp_path / "credentials" / "watcher").unlink()
    with pytest.raises(mlflow_access.AccessError, match=r"credentials/watcher"):
        mlflow_access.provision_from_files(config, tmp_path / "credentials")


def test_a_password_file_becomes_mlflows_password_variable(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-from-a-secret\n")
    env = {"MLFLOW_TRACKING_USERNAME": "worker", "MLFLOW_TRACKING_PASSWORD_FILE": str(secret)}
    load_password_file(env)
    assert env["MLFLOW_TRACKING_PASSWORD"] == "s3cret-from-a-secret"
    assert basic_auth_header(env) == {"Authorization": "Basic d29ya2VyOnMzY3JldC1mcm9tLWEtc2VjcmV0"}
    assert basic_auth_header({}) == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLFLOW_TRACKING_PASSWORD_FILE": "/nonexistent/pw"}, "MLFLOW_TRACKING_USERNAME"),
        (
            {"MLFLOW_TRACKING_USERNAME": "w", "MLFLOW_TRACKING_PASSWORD_FILE": "/nonexistent/pw"},
            "MLFLOW_TRACKING_PASSWORD_FILE: cannot read the secret file /nonexistent/pw",
        ),
    ],
)
def test_an_unusable_password_file_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(CredentialError, match=message):
        load_password_file(env)


def test_a_model_that_does_not_exist_serves_nothing_for_every_user(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow answers a user who is not an admin 403 about a model that does not exist: the
    services read that as "no model yet", as the admin's 404 (a first start has no model)."""
    from deploy.local.bootstrap import Registry as BootstrapRegistry
    from inference.registry import serving_version

    for user in ("worker", "watcher", "trainer", "admin"):
        credentials = stack.mlflow_credentials(user)
        for key, value in credentials.items():
            monkeypatch.setenv(key, value)
        client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
        assert serving_version(client, "no-such-model", "production") is None
        assert BootstrapRegistry(stack.mlflow_uri).serving("no-such-model", "production") is None
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    client = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    with pytest.raises(MlflowException, match="401"):
        serving_version(client, "no-such-model", "production")
