"""The Kafka client security settings: one place turns them into aiokafka's (and faust's)
arguments, and a setting that cannot work is refused at start-up with what to set."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials
from pydantic import ValidationError

from contracts.topics import KafkaSettings
from stats.kafka import credentials


def test_plaintext_by_default_with_no_credentials() -> None:
    assert KafkaSettings(bootstrap_servers="b:9092").client() == {
        "bootstrap_servers": "b:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert credentials(KafkaSettings()) is None


def test_scram_from_a_password_file_read_when_a_client_is_made(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n")
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", username="worker", password_file=secret
    )
    assert kafka.client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker",
        "sasl_plain_password": "first",
    }
    secret.write_text("rotated")
    assert kafka.client_options()["sasl_plain_password"] == "rotated"
    faust_credentials = credentials(kafka)
    assert isinstance(faust_credentials, SASLCredentials)
    assert (faust_credentials.username, faust_credentials.password) == ("worker", "rotated")
    assert faust_credentials.mechanism.value == "SCRAM-SHA-512"


def test_sasl_ssl_verifies_the_broker() -> None:
    kafka = KafkaSettings(security_protocol="SASL_SSL", username="gateway", password="p")
    context = kafka.client_options()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    secret = KafkaSettings(security_protocol="SASL_SSL", username="g", password="hunter2-x")
    assert "hunter2-x" not in repr(secret)  # a logged settings object shows no password


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs RS_KAFKA_USERNAME"),
        ({"security_protocol": "SASL_PLAINTEXT", "username": "u"}, "needs RS_KAFKA_USERNAME"),
        (
            {"security_protocol": "SASL_SSL", "username": "u", "password": "p",
             "password_file": "/f"},
            "not both",
        ),
        ({"username": "u", "password": "p"}, "set RS_KAFKA_SECURITY_PROTOCOL"),
        ({"ssl_ca_file": "/ca.crt"}, "RS_KAFKA_SSL_CA_FILE needs SSL"),
        ({"security_protocol": "SASL"}, "security_protocol"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused(settings: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        KafkaSettings(**settings)  # type: ignore[arg-type]


def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose and the ConfigMap pass unset variables as empty strings."""
    for name in ("USERNAME", "PASSWORD", "PASSWORD_FILE", "SSL_CA_FILE"):
        monkeypatch.setenv(f"RS_KAFKA_{name}", "")
    assert KafkaSettings().client_options() == {"security_protocol": "PLAINTEXT"}
