"""Who may do what on Kafka: one principal (SCRAM user) per component, and its ACLs.

The table is the design of issue #19 (least privilege), in data: the local broker applies it at
each start (``deploy.acl``), the Kubernetes KafkaUsers are generated from it
(``deploy.kafka_users``), and the tests apply it to their own prefixed topics and check every
principal against every action.

A grant names a topic by its ``KafkaSettings`` field, so ``access(kafka.prefixed(...))`` gives
the same rights on a test's own topics. Kafka's own implications hold: READ and WRITE imply
DESCRIBE (metadata, offsets); an idempotent producer needs WRITE on a topic only (KIP-679).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from contracts.topics import KafkaSettings

Operation = Literal["READ", "WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"]
ResourceType = Literal["TOPIC", "GROUP"]


@dataclass(frozen=True)
class Grant:
    """ALLOW ``operation`` on the topic or group ``name`` (a literal name, never a pattern)."""

    resource: ResourceType
    name: str
    operation: Operation


@dataclass(frozen=True)
class Groups:
    """The consumer groups that commit offsets; the defaults are the services' defaults
    (a test holds them together). Every other reader reads without a group."""

    workers: str = "reviewstream-workers"
    shadow_workers: str = "reviewstream-shadow"
    stats: str = "reviewstream-stats"
    retrain: str = "reviewstream-retrain"


# Topic kinds, as KafkaSettings fields; ".dlq" marks a topic's dead-letter topic.
_DLQ = ".dlq"
_RIGHTS: dict[str, dict[str, tuple[Operation, ...]]] = {
    # The HTTP edge: publishes requests, feedback and Alertmanager's alerts; reads the
    # answers, the serving model and the fleet (for its pages).
    "gateway": {
        "requests_topic": ("WRITE",),
        "feedback_topic": ("WRITE",),
        "alerts_topic": ("READ", "WRITE"),
        "predictions_topic": ("READ",),
        "models_topic": ("READ",),
        "fleet_topic": ("READ",),
    },
    # Inference workers, serving and shadow: read requests and the models topic; answer,
    # reject into the requests' dead letters, report status on the fleet topic.
    "worker": {
        "requests_topic": ("READ",),
        "models_topic": ("READ",),
        "predictions_topic": ("WRITE",),
        "shadow_predictions_topic": ("WRITE",),
        "requests_topic" + _DLQ: ("WRITE",),
        "fleet_topic": ("WRITE",),
    },
    # The release component (registry watcher): the only writer of models.events.
    "release": {
        "models_topic": ("READ", "WRITE"),
        "alerts_topic": ("READ", "WRITE"),
        "fleet_topic": ("READ",),
    },
    # The stats processor: reads the answers and the feedback; dead-letters what it cannot use.
    "stats": {
        "predictions_topic": ("READ",),
        "feedback_topic": ("READ",),
        "shadow_predictions_topic": ("READ",),
        "predictions_topic" + _DLQ: ("WRITE",),
        "feedback_topic" + _DLQ: ("WRITE",),
        "shadow_predictions_topic" + _DLQ: ("WRITE",),
    },
    # Traffic producers: write requests and feedback; read the answers and rejections to time
    # them, and the requests topic to replay recorded traffic (--from-topic).
    "producer": {
        "requests_topic": ("READ", "WRITE"),
        "feedback_topic": ("WRITE",),
        "predictions_topic": ("READ",),
        "requests_topic" + _DLQ: ("READ",),
    },
    # Retraining and the live-data export: read the alerts and the requests' texts.
    "training": {
        "alerts_topic": ("READ",),
        "requests_topic": ("READ",),
    },
}
_GROUPS: dict[str, tuple[str, ...]] = {
    "worker": ("workers", "shadow_workers"),
    "stats": ("stats",),
    "training": ("retrain",),
}
# The init job (python -m deploy.topics): creates the topics, nothing else.
ADMIN = "init"
_ADMIN_OPERATIONS: tuple[Operation, ...] = (
    "DESCRIBE",
    "CREATE",
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
)

PRINCIPALS: tuple[str, ...] = (*_RIGHTS, ADMIN)


def _topic(kafka: KafkaSettings, kind: str) -> str:
    field, dlq, _ = kind.partition(_DLQ)
    name = str(getattr(kafka, field))
    return KafkaSettings.dlq(name) if dlq else name


def access(kafka: KafkaSettings, groups: Groups | None = None) -> dict[str, frozenset[Grant]]:
    """Every principal's grants on ``kafka``'s topics (and ``groups``)."""
    groups = groups or Groups()
    table: dict[str, frozenset[Grant]] = {}
    for principal, rights in _RIGHTS.items():
        grants = {
            Grant("TOPIC", _topic(kafka, kind), op) for kind, ops in rights.items() for op in ops
        }
        grants |= {
            Grant("GROUP", getattr(groups, group), "READ") for group in _GROUPS.get(principal, ())
        }
        table[principal] = frozenset(grants)
    every_topic = {spec.name for spec in kafka.topic_specs()}
    table[ADMIN] = frozenset(
        Grant("TOPIC", name, op) for name in every_topic for op in _ADMIN_OPERATIONS
    )
    return table


def allowed(
    table: dict[str, frozenset[Grant]], principal: str, resource: ResourceType, name: str, op: str
) -> bool:
    """Whether the table lets ``principal`` do ``op``, with Kafka's implications (READ and
    WRITE imply DESCRIBE)."""
    ops = {g.operation for g in table[principal] if (g.resource, g.name) == (resource, name)}
    return op in ops or (op == "DESCRIBE" and bool(ops & {"READ", "WRITE"}))
