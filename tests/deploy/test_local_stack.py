"""The local stack is real: console tools, SQL and MLflow answer, and data survives a restart."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
import mlflow
import pytest
from mlflow import MlflowClient

from contracts.topics import KafkaSettings
from deploy.local.kafka import LOG4J_CONFIG, resolve_jars
from deploy.local.launcher import ROOT, LocalStack, free_port
from deploy.local.settings import StackSettings
from runtime.mlflow_credentials import basic_auth_header


def kafka_console(stack: LocalStack, tool: str, *args: str) -> str:
    """Run a console tool from the very jars the broker runs on."""
    libs = resolve_jars(StackSettings().cache_dir)
    result = subprocess.run(
        ["java", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", f"{libs}/*", tool,
         "--bootstrap-server", stack.bootstrap_servers, *args],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return result.stdout


def test_console_tool_lists_the_topics_with_their_partitions(stack: LocalStack) -> None:
    settings = KafkaSettings()
    listed = set(kafka_console(stack, "org.apache.kafka.tools.TopicCommand", "--list").split())
    assert {spec.name for spec in settings.topic_specs()} <= listed

    described = kafka_console(
        stack, "org.apache.kafka.tools.TopicCommand", "--describe", "--topic", "reviews.requests"
    )
    assert f"PartitionCount: {settings.requests_partitions}" in described
    models = kafka_console(
        stack, "org.apache.kafka.tools.TopicCommand", "--describe", "--topic", "models.events"
    )
    assert "cleanup.policy=compact" in models


async def test_schema_is_migrated(stack: LocalStack) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()
    assert {"predictions", "feedback", "window_stats", "schema_migrations"} <= tables
    assert versions[0] == "0001_initial"


def test_mlflow_ui_answers_once_signed_in(stack: LocalStack) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(stack.mlflow_uri, timeout=10)
    refused.value.close()  # the refusal holds the connection: an unclosed socket otherwise
    assert refused.value.code == 401
    credentials = stack.mlflow_credentials("people")
    request = urllib.request.Request(stack.mlflow_uri, headers=basic_auth_header(credentials))
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert b"MLflow" in response.read()


def test_restart_keeps_postgres_data_and_the_mlflow_registry(
    tmp_path: Path, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second, independent stack: stopped and started again on the same state folder (its
    MLflow passwords too: the admin's from the first start still signs in after the restart)."""
    own = LocalStack(state_dir=tmp_path / "state")
    own.start()
    for key, value in own.mlflow_credentials(own.mlflow_user).items():
        monkeypatch.setenv(key, value)
    try:
        _write_row(own.database_url)
        client = MlflowClient(tracking_uri=own.mlflow_uri, registry_uri=own.mlflow_uri)
        client.create_registered_model("survivor")
    finally:
        own.stop()

    own.start()
    try:
        assert _read_row(own.database_url) == "kept"
        client = MlflowClient(tracking_uri=own.mlflow_uri, registry_uri=own.mlflow_uri)
        assert client.get_registered_model("survivor").name == "survivor"
    finally:
        own.stop()
    mlflow.set_tracking_uri(stack.mlflow_uri)


def _write_row(url: str) -> None:
    import asyncio

    async def write() -> None:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE IF NOT EXISTS survival (v text)")
        await conn.execute("INSERT INTO survival VALUES ('kept')")
        await conn.close()

    asyncio.run(write())


def _read_row(url: str) -> str:
    import asyncio

    async def read() -> str:
        conn = await asyncpg.connect(url)
        value = await conn.fetchval("SELECT v FROM survival")
        await conn.close()
        return str(value)

    return asyncio.run(read())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgresql://u:p@127.0.0.1:{port}/db"),
        ("RS_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:{port}"),
        ("MLFLOW_TRACKING_URI", "http://127.0.0.1:{port}"),
        ("RS_STACK_PROMETHEUS_URL", "http://127.0.0.1:{port}"),
        ("RS_STACK_ALERTMANAGER_URL", "http://127.0.0.1:{port}"),
    ],
)
def test_a_taken_port_names_the_setting_to_change(
    tmp_path: Path, variable: str, value: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "RS_STACK_STATE_DIR": str(tmp_path),
            "DATABASE_URL": f"postgresql://u:p@127.0.0.1:{free_port()}/db",
            "RS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "RS_STACK_KAFKA_CONTROLLER_PORT": str(free_port()),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
            "RS_STACK_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
            "RS_STACK_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
            variable: value.format(port=port),
        }
        result = subprocess.run(
            [sys.executable, "-m", "deploy.local", "--infra-only"],
            cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode != 0
    assert "already in use" in result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
