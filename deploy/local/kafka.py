"""Apache Kafka in KRaft mode (one combined broker and controller) from the official jars.

The jars are resolved by Maven from ``pom.xml`` beside this file into the cache folder (once
per pom version), the storage is formatted on first start, and the topics are created as
soon as a metadata request answers. Run alone with ``python -m deploy.local.kafka``.

Two listeners: the plaintext loopback one (``RS_KAFKA_BOOTSTRAP_SERVERS``) whose anonymous
principal is a super user, for ``make up`` and the tests' own checks; and an authenticated one
(SASL_PLAINTEXT, SCRAM-SHA-512, on ``RS_STACK_KAFKA_SASL_PORT``) where each principal of
``contracts.kafka_access`` gets only its grants (KRaft's StandardAuthorizer). The principals'
passwords are generated on first start into ``<state>/kafka/users/<name>`` (mode 0600).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from contracts.kafka_access import PRINCIPALS, access
from deploy.acl import create_acls
from deploy.local.child import run_child, wait_ready
from deploy.local.kafka_users import MECHANISM, ensure_passwords, scram_arguments
from deploy.local.settings import StackSettings
from deploy.topics import ensure_topics, wait_for_broker

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"


def resolve_jars(cache_dir: Path) -> Path:
    """Return a folder with the broker's jars, running Maven only when the pom changed."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    libs = cache_dir / f"kafka-{digest}"
    if libs.is_dir():
        return libs
    if shutil.which("mvn") is None:
        sys.exit("error: Maven (mvn) is needed once to fetch the Kafka jars; install it, retry")
    staging = cache_dir / f".kafka-{digest}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log.info("resolving Kafka jars with Maven into %s (once)", libs)
    subprocess.run(
        [
            "mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(POM),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        check=True,
    )  # fmt: skip
    staging.rename(libs)
    return libs


def server_properties(settings: StackSettings, data_dir: Path) -> str:
    host, port = settings.kafka_address
    controller = f"{host}:{settings.kafka_controller_port}"
    sasl = f"SASL_PLAINTEXT://{host}:{settings.kafka_sasl_port}"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{controller}",
            f"listeners=PLAINTEXT://{host}:{port},{sasl},CONTROLLER://{controller}",
            f"advertised.listeners=PLAINTEXT://{host}:{port},{sasl}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map="
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            # ACLs decide on the SASL listener. The loopback and controller listeners are
            # unauthenticated (User:ANONYMOUS), kept unrestricted for `make up` and the tests.
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:ANONYMOUS",
            f"log.dirs={data_dir.resolve()}",
            # Topics are created explicitly, with their partition counts.
            "auto.create.topics.enable=false",
            # One node: replication factors of one, and no wait before the first rebalance.
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # The controller logs any event slower than this at ERROR (2 s by default): on a
            # busy laptop, with the services and a training run starting beside it, that
            # happens without anything being wrong.
            "controller.performance.always.log.threshold.ms=10000",
            "",
        ]
    )


def kafka_command(libs: Path, properties: Path, heap_mb: int, *main: str) -> list[str]:
    return [
        "java",
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp",
        f"{libs}/*",
        *main,
    ]


def format_storage(
    libs: Path, properties: Path, data_dir: Path, heap_mb: int, scram: list[str]
) -> bool:
    """Format a new storage, with the SCRAM users (``scram``: --add-scram arguments) in its
    first metadata; False when it was formatted before."""
    if (data_dir / "meta.properties").exists():
        return False
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    log.info("formatting Kafka storage in %s (cluster %s)", data_dir, cluster_id)
    command = kafka_command(libs, properties, heap_mb, "kafka.tools.StorageTool")
    # `=` form: a base64 id may start with "-" and would otherwise be read as an option.
    subprocess.run(
        [*command, "format", f"--cluster-id={cluster_id}", "-c", str(properties), *scram],
        check=True,
    )
    return True


def add_users(libs: Path, properties: Path, bootstrap: str, passwords: dict[str, str]) -> None:
    """Set SCRAM credentials on a running broker (kafka-configs; a JVM start per user)."""
    command = kafka_command(libs, properties, 128, "kafka.admin.ConfigCommand")
    for name, password in sorted(passwords.items()):
        log.info("adding the SCRAM user %s", name)
        subprocess.run(
            [*command, "--bootstrap-server", bootstrap, "--alter", "--entity-type", "users",
             "--entity-name", name, "--add-config", f"{MECHANISM}=[password={password}]"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip


def main() -> int:
    settings = StackSettings()
    state = settings.state_dir / "kafka"
    data_dir = state / "data"
    state.mkdir(parents=True, exist_ok=True)
    properties = state / "server.properties"
    properties.write_text(server_properties(settings, data_dir))
    libs = resolve_jars(settings.cache_dir)
    passwords, new = ensure_passwords(state / "users", PRINCIPALS)
    formatted = format_storage(
        libs, properties, data_dir, settings.kafka_heap_mb, scram_arguments(passwords)
    )
    # A storage formatted before (an older state, or a password file removed): those users
    # are set through the loopback listener once the broker answers.
    late = {} if formatted else {name: passwords[name] for name in new}

    async def initialise(child: subprocess.Popen[bytes]) -> None:
        await wait_ready(child, "Kafka", wait_for_broker(settings.kafka))
        created = await ensure_topics(settings.kafka)
        if late:
            host, port = settings.kafka_address
            await asyncio.to_thread(add_users, libs, properties, f"{host}:{port}", late)
        acls = await create_acls(settings.kafka, access(settings.kafka))
        log.info("%d ACLs for %d principals on the SASL listener", acls, len(PRINCIPALS))
        log.info(
            "Kafka ready at %s (%d topics created)", settings.kafka.bootstrap_servers, len(created)
        )

    command = kafka_command(libs, properties, settings.kafka_heap_mb, "kafka.Kafka")
    # honcho stops every process at once; the broker goes last, so that the services stopping
    # beside it can still commit and leave their groups instead of logging a burst of
    # connection errors. A single broker's controlled shutdown takes about a second, well
    # within honcho's 5 s before SIGKILL.
    return run_child([*command, str(properties)], initialise=initialise, stop_delay_s=1.5)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The readiness loop expects refused connections; aiokafka would log each one as an error.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sys.exit(main())
