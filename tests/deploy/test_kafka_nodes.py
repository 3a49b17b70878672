"""The settings and properties of one or three local KRaft nodes (no broker runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.topics import KafkaSettings
from deploy.local.kafka import server_properties
from deploy.local.settings import KafkaNode, StackSettings

THREE = "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"


def settings(brokers: int, bootstrap: str) -> StackSettings:
    return StackSettings(
        kafka_brokers=brokers,
        kafka_controller_port=9093,
        kafka_sasl_port=9094,
        kafka_peer_controller_ports=[9193, 9293],
        kafka_peer_sasl_ports=[9194, 9294],
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
    )


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_one_broker_is_one_node_with_replication_factors_of_one(tmp_path: Path) -> None:
    one = settings(1, "127.0.0.1:9092")
    assert one.kafka_nodes == [KafkaNode(1, "127.0.0.1", 9092, 9093, 9094)]
    found = properties(server_properties(one, one.kafka_nodes[0], tmp_path))
    assert found["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert found["offsets.topic.replication.factor"] == "1"
    assert found["transaction.state.log.min.isr"] == "1"
    assert "min.insync.replicas" not in found
    assert "default.replication.factor" not in found


def test_three_brokers_are_three_voters_each_with_both_listeners(tmp_path: Path) -> None:
    three = settings(3, THREE)
    assert [(n.id, n.port, n.controller_port, n.sasl_port) for n in three.kafka_nodes] == [
        (1, 9092, 9093, 9094),
        (2, 9192, 9193, 9194),
        (3, 9292, 9293, 9294),
    ]
    second = properties(server_properties(three, three.kafka_nodes[1], tmp_path))
    assert second["node.id"] == "2"
    assert second["controller.quorum.voters"] == (
        "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
    )
    assert second["listeners"] == (
        "PLAINTEXT://127.0.0.1:9192,SASL_PLAINTEXT://127.0.0.1:9194,CONTROLLER://127.0.0.1:9193"
    )
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "default.replication.factor"):  # fmt: skip
        assert second[key] == "3", key
    assert second["min.insync.replicas"] == second["transaction.state.log.min.isr"] == "2"


@pytest.mark.parametrize(
    ("brokers", "bootstrap", "says"),
    [
        (3, "127.0.0.1:9092", "to list 3 addresses"),
        (2, "127.0.0.1:9092,127.0.0.1:9192", "is 1 or 3"),
    ],
)
def test_a_cluster_the_settings_cannot_place_is_a_clear_error(
    brokers: int, bootstrap: str, says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(brokers, bootstrap)
