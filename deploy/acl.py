"""Apply ``contracts.kafka_access`` to a broker: one CreateAcls request for every grant.

aiokafka's admin client has no ACL call, but it ships the CreateAcls request (API 30); one
request carries the whole table. Creating an ACL that exists is a no-op, so this is idempotent
and cheap enough to run at every start. The client must be allowed to ALTER the cluster (the
local stack's loopback listener is a super user).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1
from aiokafka.protocol.api import Request

from contracts.kafka_access import Grant
from contracts.topics import KafkaSettings

# Kafka's wire codes (org.apache.kafka.common.acl / resource).
RESOURCE_TYPES = {"TOPIC": 2, "GROUP": 3, "CLUSTER": 4}
OPERATIONS = {
    "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8,
    "DESCRIBE_CONFIGS": 10, "ALTER_CONFIGS": 11,
}  # fmt: skip
LITERAL = 3
ALLOW = 3


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    """Many ACLs in one request (aiokafka's own CreateAclsRequest carries one)."""

    API_KEY = 30

    def __init__(self, creations: list[tuple[Any, ...]]) -> None:
        self._creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._creations)


def creations(table: Mapping[str, Set[Grant]]) -> list[tuple[Any, ...]]:
    return [
        (RESOURCE_TYPES[g.resource], g.name, LITERAL, f"User:{principal}", "*",
         OPERATIONS[g.operation], ALLOW)
        for principal, grants in sorted(table.items())
        for g in sorted(grants, key=lambda g: (g.resource, g.name, g.operation))
    ]  # fmt: skip


async def create_acls(kafka: KafkaSettings, table: Mapping[str, Set[Grant]]) -> int:
    """ALLOW every grant of ``table`` (principal -> grants); returns how many were sent.
    Raises the broker's error (e.g. ClusterAuthorizationFailedError) if any was refused."""
    client = AIOKafkaClient(**kafka.client(), client_id="rs-acl")
    await client.bootstrap()
    try:
        wanted = creations(table)
        response = await client.send(client.get_random_node(), _CreateAcls(wanted))
        for code, message in response.creation_responses:
            if code:
                raise for_code(code)(message)
        return len(wanted)
    finally:
        await client.close()
