"""The attacker matrix (issue #19): every principal against every action, on the real stack.

Each credential is tried on the door it opens: API keys on a real gateway process, Kafka
credentials on the broker's SASL/SCRAM listener with the ACLs of ``contracts.kafka_access``,
MLflow users on the basic-auth server, database roles on PostgreSQL. "No credential" is tried
on every door. A cell is ``allowed`` when the action went through authentication and
authorization (a classification with no model deployed then answers 503 ``no_model``: past the
door), ``refused`` when the door said no (401/403, TopicAuthorizationFailed, a refused login,
InsufficientPrivilege), and ``-`` when the credential opens no door to that action. The table
observed is written to ``.artifacts/security/attacker-matrix.md`` and must equal ``DESIGN``,
which the README prints.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts import KafkaSettings
from contracts.kafka_access import access
from deploy.acl import create_acls
from deploy.local.launcher import ROOT, LocalStack
from gateway.auth import hash_key, new_key
from stats.roles import READER, WRITER
from tests.deploy.test_kafka_acl import can_read, can_write, describable
from tests.deploy.test_mlflow_access import Registry
from tests.gateway_harness import kafka_env, running_gateway
from tests.serving import eventually

ACTIONS = (
    "classify",
    "read stats",
    "move an alias",
    "register a version",
    "write models.events",
    "write requests",
    "read predictions",
    "write the database",
)
GATEWAY = ("classify", "read stats")
MLFLOW = ("move an alias", "register a version")
KAFKA = ("write models.events", "write requests", "read predictions")
DATABASE = ("write the database",)

Y, N = True, False


def row(door: tuple[str, ...], *allowed: bool) -> dict[str, bool | None]:
    given = dict(zip(door, allowed, strict=True))
    return {action: given.get(action) for action in ACTIONS}


# The design: who may do what. None: this credential opens no door to the action.
DESIGN: dict[str, dict[str, bool | None]] = {
    "no credential": dict.fromkeys(ACTIONS, N),
    "API key: viewer": row(GATEWAY, N, Y),
    "API key: client": row(GATEWAY, Y, Y),
    "API key: admin": row(GATEWAY, Y, Y),
    "Kafka: gateway": row(KAFKA, N, Y, Y),
    "Kafka: worker": row(KAFKA, N, N, N),
    "Kafka: release (registry watcher)": row(KAFKA, Y, N, N),
    "Kafka: stats": row(KAFKA, N, N, Y),
    "Kafka: producer": row(KAFKA, N, Y, Y),
    "Kafka: training": row(KAFKA, N, N, N),
    "MLflow: people": row(MLFLOW, N, N),
    "MLflow: worker": row(MLFLOW, N, N),
    # MLflow gates both on EDIT of the model: it cannot give one without the other.
    "MLflow: trainer": row(MLFLOW, Y, Y),
    "MLflow: release": row(MLFLOW, Y, Y),
    "MLflow: watcher": row(MLFLOW, Y, Y),
    "database: reviewstream_writer (stats)": row(DATABASE, Y),
    "database: reviewstream_reader (gateway, training)": row(DATABASE, N),
}
KAFKA_PRINCIPALS = {
    "Kafka: gateway": "gateway",
    "Kafka: worker": "worker",
    "Kafka: release (registry watcher)": "release",
    "Kafka: stats": "stats",
    "Kafka: producer": "producer",
    "Kafka: training": "training",
}
KEYS = {"API key: viewer": new_key(), "API key: client": new_key(), "API key: admin": new_key()}


def table(observed: dict[str, dict[str, bool | None]]) -> str:
    mark = {True: "allowed", False: "refused", None: "-"}
    lines = [
        "| principal | " + " | ".join(ACTIONS) + " |",
        "|---" * (len(ACTIONS) + 1) + "|",
    ]
    lines += [
        f"| {who} | " + " | ".join(mark[cells[a]] for a in ACTIONS) + " |"
        for who, cells in observed.items()
    ]
    return "\n".join(lines) + "\n"


async def gateway_door(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> dict[str, dict[str, bool]]:
    records = [
        {"name": who.split()[-1], "role": who.split()[-1], "sha256": hash_key(key)}
        for who, key in KEYS.items()
    ]
    env = {**kafka_env(kafka), "DATABASE_URL": database_url,
           "RS_GATEWAY_API_KEYS": json.dumps(records),
           "RS_GATEWAY_REPLY_TIMEOUT_S": "1"}  # fmt: skip
    callers: dict[str, dict[str, str]] = {"no credential": {}}
    callers |= {who: {"X-API-Key": key} for who, key in KEYS.items()}
    found: dict[str, dict[str, bool]] = {}
    async with (
        running_gateway(env, tmp_path / "gateway.log") as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        for who, headers in callers.items():
            classify = await http.post("/v1/classify", json={"text": "Fine."}, headers=headers)
            stats = await http.get("/v1/stats/summary", headers=headers)
            found[who] = {
                "classify": classify.status_code not in (401, 403),
                "read stats": stats.status_code == 200,
            }
            assert stats.status_code in (200, 401, 403), stats.text
    return found


async def kafka_door(stack: LocalStack, kafka: KafkaSettings) -> dict[str, dict[str, bool]]:
    grants = access(kafka)
    await create_acls(kafka, grants)  # through the loopback listener: a super user
    # A record to read back: a permitted read of the predictions topic finds it.
    producer = AIOKafkaProducer(**kafka.client(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(kafka.predictions_topic, b"seed", key=b"seed", partition=0)
    finally:
        await producer.stop()
    found: dict[str, dict[str, bool]] = {}
    for who, principal in KAFKA_PRINCIPALS.items():
        settings = stack.kafka_as(principal, kafka)
        # The broker's authorizer follows the controller's metadata a moment after the ACLs.
        topic = min(g.name for g in grants[principal] if g.resource == "TOPIC")
        await eventually(
            lambda s=settings, t=topic: describable(s, t), timeout_s=30, what=f"{who}'s ACLs"
        )
        found[who] = {
            "write models.events": await can_write(settings, kafka.models_topic),
            "write requests": await can_write(settings, kafka.requests_topic),
            "read predictions": await can_read(settings, kafka.predictions_topic),
        }
    anonymous = kafka.model_copy(update={"bootstrap_servers": stack.sasl_bootstrap_servers})
    found["no credential"] = dict.fromkeys(KAFKA, await anonymous_gets_through(anonymous))
    return found


async def anonymous_gets_through(settings: KafkaSettings) -> bool:
    producer = AIOKafkaProducer(**settings.client(), request_timeout_ms=5000)
    try:
        async with asyncio.timeout(30):
            await producer.start()
            await producer.send_and_wait(settings.requests_topic, b"x")
        return True
    except (KafkaError, TimeoutError):
        return False
    finally:
        await producer.stop()


def mlflow_door(stack: LocalStack) -> dict[str, dict[str, bool]]:
    registry = Registry(stack)
    actions = {"move an alias": "move_alias", "register a version": "register_version"}
    users: dict[str, tuple[str, str] | None] = {"no credential": None}
    for who in DESIGN:
        if who.startswith("MLflow: "):
            user = who.removeprefix("MLflow: ")
            users[who] = (user, stack.mlflow_password_file(user).read_text().strip())
    found: dict[str, dict[str, bool]] = {}
    for who, auth in users.items():
        with httpx.Client(base_url=stack.mlflow_uri, auth=auth, timeout=30) as http:
            codes = {action: registry.attempt(http, name) for action, name in actions.items()}
        assert set(codes.values()) <= {200, 401, 403}, codes
        found[who] = {action: code == 200 for action, code in codes.items()}
    return found


async def database_door(stack: LocalStack, database_url: str) -> dict[str, dict[str, bool]]:
    logins = {
        "database: reviewstream_writer (stats)": stack.database_url_as(WRITER.name, database_url),
        "database: reviewstream_reader (gateway, training)": stack.database_url_as(
            READER.name, database_url
        ),
        # The reader's name without its password.
        "no credential": database_url.replace("reviewstream:reviewstream@", f"{READER.name}@"),
    }
    found: dict[str, dict[str, bool]] = {}
    for who, url in logins.items():
        try:
            conn = await asyncpg.connect(url)
        except (asyncpg.PostgresError, asyncpg.InterfaceError):  # the login is refused
            found[who] = {"write the database": False}
            continue
        try:
            await conn.execute("DELETE FROM window_stats")
            found[who] = {"write the database": True}
        except asyncpg.InsufficientPrivilegeError:
            found[who] = {"write the database": False}
        finally:
            await conn.close()
    return found


@pytest.mark.timeout(600)
async def test_every_principal_against_every_action_is_as_designed(
    stack: LocalStack, kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    assert "reviewstream:reviewstream@" in database_url  # the owner's URL, made by the fixture
    doors = [
        await gateway_door(kafka, database_url, tmp_path),
        await kafka_door(stack, kafka),
        await asyncio.to_thread(mlflow_door, stack),
        await database_door(stack, database_url),
    ]
    observed: dict[str, dict[str, bool | None]] = {who: dict.fromkeys(ACTIONS) for who in DESIGN}
    for door in doors:
        for who, cells in door.items():
            observed[who].update(cells)
    text = table(observed)
    out = ROOT / ".artifacts" / "security" / "attacker-matrix.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print("\n" + text)
    assert observed == DESIGN, f"observed:\n{text}\ndesigned:\n{table(DESIGN)}"
