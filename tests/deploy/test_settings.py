"""Every setting a service reads is set (or passed through) by compose and by Kubernetes, and
the health ports match what the services serve.

Two sources of truth, both checked:
- the services' own settings classes, for each package in ``deploy.local.SERVICES``
  (``<package>.settings.Settings``: prefix + field name, aliases, and the nested
  ``KafkaSettings``/``DatabaseSettings`` fields). A field added to a service without a deploy
  entry fails here, and so does a deploy entry naming no field (a typo or a stale name);
- :data:`CONTRACT`, the settings agreed in the service contracts, checked always, so this holds
  even before the services' code is merged.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from pydantic import AliasChoices, AliasPath
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from contracts.topics import KafkaSettings
from deploy.healthcheck import ENDPOINTS
from deploy.local.__main__ import SERVICES
from runtime.database import DatabaseSettings
from tests.deployrender import (
    DEPLOYED,
    OVERLAYS,
    compose_config,
    container,
    container_env,
    find,
    overlay,
)

# One name, or several that are alternatives (AliasChoices): any one of them configures it.
EnvName = tuple[str, ...]

# Set only where a deployment opts in (the gateway-backend-tls component); elsewhere the
# service's default (no TLS on the pod, the Ingress terminates it) is what is wanted.
OPT_IN = {"RS_GATEWAY_TLS_CERTFILE", "RS_GATEWAY_TLS_KEYFILE"}


def env_names(settings: type[BaseSettings]) -> list[EnvName]:
    """The environment variables a pydantic-settings class reads, nested classes included."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: list[EnvName] = []
    for field_name, field in settings.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            names += env_names(nested)  # read by its own class, with its own prefix
            continue
        names.append(_aliases(field) or (f"{prefix}{field_name}".upper(),))
    return names


def _aliases(field: FieldInfo) -> EnvName:
    alias: Any = field.validation_alias or field.alias
    if alias is None:
        return ()
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    names = []
    for choice in choices:
        first = choice.path[0] if isinstance(choice, AliasPath) else choice
        names.append(str(first).upper())
    return tuple(names)


KAFKA = {name for (name,) in env_names(KafkaSettings)}
DATABASE = {names[0] for names in env_names(DatabaseSettings)}

# The service contracts (PREAMBLE "Service contracts" and the settings named in issue 9).
CONTRACT: dict[str, set[str]] = {
    "workers": {
        *KAFKA,
        "MLFLOW_TRACKING_URI",
        "RS_WORKER_HOST",
        "RS_WORKER_PORT",
        "RS_WORKER_GROUP_ID",
        "RS_WORKER_MODEL_NAME",
        "RS_WORKER_MODEL_ALIAS",
    },
    "registry_watcher": {
        *KAFKA,
        "MLFLOW_TRACKING_URI",
        "RS_WATCHER_HOST",
        "RS_WATCHER_PORT",
        "RS_WATCHER_POLL_INTERVAL_S",
    },
    "stats": {*KAFKA, *DATABASE, "RS_STATS_HOST", "RS_STATS_PORT"},
    "gateway": {
        *KAFKA,
        *DATABASE,
        "RS_GATEWAY_HOST",
        "RS_GATEWAY_PORT",
        "RS_GATEWAY_API_KEYS_FILE",
        "RS_GATEWAY_API_KEYS",
        "RS_GATEWAY_TLS_CERTFILE",
        "RS_GATEWAY_TLS_KEYFILE",
    },
}
PREFIX = {"workers": "RS_WORKER_", "registry_watcher": "RS_WATCHER_"}


def prefix_of(package: str) -> str:
    return PREFIX.get(package, f"RS_{package.upper()}_")


def compose_env(package: str) -> dict[str, Any]:
    env: dict[str, Any] = compose_config()["services"][DEPLOYED[package][0]]["environment"]
    return env


def k8s_env(name: str, package: str) -> dict[str, Any]:
    manifests = overlay(name)
    return container_env(manifests, container(find(manifests, "Deployment", DEPLOYED[package][1])))


def missing(expected: list[EnvName], present: set[str]) -> list[str]:
    return [" or ".join(names) for names in expected if not present & set(names)]


def service_settings(package: str) -> type[BaseSettings]:
    settings: type[BaseSettings] = importlib.import_module(f"{package}.settings").Settings
    return settings


# --- the contract table: holds now, with or without the services' code ----------------------


def test_contract_covers_every_deployed_service() -> None:
    assert set(CONTRACT) == set(DEPLOYED) == set(ENDPOINTS)
    assert "RS_KAFKA_BOOTSTRAP_SERVERS" in KAFKA
    assert "RS_KAFKA_REQUESTS_PARTITIONS" in KAFKA
    assert "DATABASE_URL" in DATABASE


@pytest.mark.parametrize("package", sorted(CONTRACT))
def test_compose_sets_every_contract_setting(package: str) -> None:
    absent = sorted(CONTRACT[package] - set(compose_env(package)))
    assert not absent, f"compose service {DEPLOYED[package][0]} lacks {absent}"


@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("package", sorted(CONTRACT))
def test_kubernetes_sets_every_contract_setting(package: str, name: str) -> None:
    absent = sorted(CONTRACT[package] - OPT_IN - set(k8s_env(name, package)))
    assert not absent, f"overlay {name}: Deployment {DEPLOYED[package][1]} lacks {absent}"


@pytest.mark.parametrize("package", sorted(CONTRACT))
def test_kubernetes_can_set_the_opt_in_settings(package: str) -> None:
    every = set().union(*(k8s_env(name, package) for name in OVERLAYS))
    assert not sorted((CONTRACT[package] & OPT_IN) - every)


@pytest.mark.parametrize("package", sorted(ENDPOINTS))
def test_every_service_listens_on_all_interfaces_on_its_port(package: str) -> None:
    endpoint = ENDPOINTS[package]
    assert endpoint.port_env.startswith(prefix_of(package))
    host = endpoint.host_env
    assert compose_env(package)[host] == "0.0.0.0"
    assert compose_env(package)[endpoint.port_env] == str(endpoint.default_port)
    for name in OVERLAYS:
        assert k8s_env(name, package)[host] == "0.0.0.0"
        assert k8s_env(name, package)[endpoint.port_env] == str(endpoint.default_port)


def test_contract_ports() -> None:
    """The ports agreed in the service contracts."""
    assert {p: e.default_port for p, e in ENDPOINTS.items()} == {
        "workers": 9101,
        "stats": 9102,
        "registry_watcher": 9103,
        "gateway": 9100,  # its operations port; the API is on 8000
    }


def test_names_come_from_prefix_fields_aliases_and_nested_classes() -> None:
    """The derivation the data-driven check relies on, on a class made for the purpose."""
    from pydantic import Field

    class Example(BaseSettings):
        model_config = {"env_prefix": "RS_EXAMPLE_"}
        port: int = 1
        tracking: str = Field("x", alias="MLFLOW_TRACKING_URI")
        kafka: KafkaSettings = Field(default_factory=KafkaSettings)
        database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    names = env_names(Example)
    assert ("RS_EXAMPLE_PORT",) in names
    assert ("MLFLOW_TRACKING_URI",) in names
    assert ("RS_KAFKA_BOOTSTRAP_SERVERS",) in names
    assert ("DATABASE_URL", "RS_DATABASE_URL") in names
    assert missing(names, {"RS_EXAMPLE_PORT"}) != []


# --- the services' own settings classes: every package `make up` runs -----------------------


@pytest.mark.parametrize("package", SERVICES)
def test_service_is_deployed(package: str) -> None:
    assert package in DEPLOYED, f"{package} runs under `make up` but not in compose/Kubernetes"


@pytest.mark.parametrize("package", SERVICES)
def test_compose_sets_every_setting_the_service_reads(package: str) -> None:
    names = env_names(service_settings(package))
    absent = missing(names, set(compose_env(package)))
    assert not absent, f"compose service {DEPLOYED[package][0]} lacks {absent}"


@pytest.mark.parametrize("package", SERVICES)
def test_kubernetes_sets_every_setting_the_service_reads(package: str) -> None:
    names = env_names(service_settings(package))
    for name in OVERLAYS:
        present = set(k8s_env(name, package)) | OPT_IN
        absent = missing(names, present)
        assert not absent, f"overlay {name}: Deployment {DEPLOYED[package][1]} lacks {absent}"
    every = set().union(*(k8s_env(name, package) for name in OVERLAYS))
    assert not missing(names, every)


@pytest.mark.parametrize("package", SERVICES)
def test_deploy_names_no_setting_the_service_lacks(package: str) -> None:
    """A typo or a renamed field would otherwise be silently ignored by pydantic-settings."""
    known = {name for names in env_names(service_settings(package)) for name in names}
    own = prefix_of(package)
    sources = {"compose": set(compose_env(package))}
    sources |= {f"k8s {name}": set(k8s_env(name, package)) for name in OVERLAYS}
    for where, present in sources.items():
        stale = sorted(n for n in present if n.startswith((own, "RS_KAFKA_")) and n not in known)
        assert not stale, f"{where} sets {stale}, which {package}.settings.Settings does not read"


@pytest.mark.parametrize("package", SERVICES)
def test_default_port_matches_the_probes(package: str) -> None:
    fields = service_settings(package).model_fields
    endpoint, prefix = ENDPOINTS[package], prefix_of(package)
    port, host = (e.removeprefix(prefix).lower() for e in (endpoint.port_env, endpoint.host_env))
    assert fields[port].default == endpoint.default_port
    assert fields[host].default == "127.0.0.1"  # so a container must set 0.0.0.0, as it does


@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("package", SERVICES)
def test_kubernetes_values_parse_with_the_service_settings(
    package: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the ConfigMaps say is valid for the real settings class (types, bounds)."""
    for key, value in k8s_env(name, package).items():
        if isinstance(value, str):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/reviewstream")
    monkeypatch.setenv("RS_KAFKA_PASSWORD", "from-the-kafka-user-secret")
    monkeypatch.delenv("RS_GATEWAY_TLS_CERTFILE", raising=False)
    monkeypatch.delenv("RS_GATEWAY_TLS_KEYFILE", raising=False)
    settings = service_settings(package)()
    assert getattr(settings, "host", None) == "0.0.0.0"
