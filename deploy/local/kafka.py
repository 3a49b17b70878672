"""Apache Kafka in KRaft mode from the official jars: one combined broker and controller, or
three of them (``RS_STACK_KAFKA_BROKERS=3``: a 3-voter quorum, replication factor 3).

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from contracts.kafka_access import PRINCIPALS, access
from deploy.acl import create_acls
from deploy.local.child import run_children, wait_ready
from deploy.local.kafka_users import MECHANISM, ensure_passwords, scram_arguments
from deploy.local.settings import KafkaNode, StackSettings
from deploy.topics import ensure_topics, min_insync_replicas, wait_for_broker

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


def server_properties(settings: StackSettings, node: KafkaNode, data_dir: Path) -> str:
    nodes = settings.kafka_nodes
    host, port = node.host, node.port
    controller = f"{host}:{node.controller_port}"
    sasl = f"SASL_PLAINTEXT://{host}:{node.sasl_port}"
    voters = ",".join(f"{n.id}@{n.host}:{n.controller_port}" for n in nodes)
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node.id}",
            f"controller.quorum.voters={voters}",
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
            *replication_properties(len(nodes)),
            "offsets.topic.num.partitions=10",
            "group.initial.rebalance.delay.ms=0",
            # The controller logs any event slower than this at ERROR (2 s by default): on a
            # busy laptop, with the services and a training run starting beside it, that
            # happens without anything being wrong.
            "controller.performance.always.log.threshold.ms=10000",
            "",
        ]
    )


def replication_properties(brokers: int) -> list[str]:
    """One node: replication factors of one. Three: every internal topic (offsets,
    transactions, share state) and every topic created without its own setting keeps three
    copies and accepts a write once two have it, so one broker may die and nothing
    acknowledged is lost."""
    min_isr = min_insync_replicas(brokers)
    return [
        f"offsets.topic.replication.factor={brokers}",
        f"transaction.state.log.replication.factor={brokers}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={brokers}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        *(
            [
                f"default.replication.factor={brokers}",
                f"min.insync.replicas={min_isr}",
                # The controller fences a silent broker (and moves its leaderships) after this
                # long: 9 s by default, during which writes to the partitions it led wait and
                # the gateway's publish timeout (5 s) answers 503. Heartbeats every 0.5 s.
                "broker.heartbeat.interval.ms=500",
                "broker.session.timeout.ms=3000",
            ]
            if brokers > 1
            else []
        ),
    ]


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


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def cluster_id_of(data_dirs: list[Path]) -> str | None:
    """The cluster id of the first formatted storage among ``data_dirs``: a node formatted
    later (its folder removed) joins the same cluster."""
    for data_dir in data_dirs:
        meta = data_dir / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.partition("=")[2].strip()
    return None


def format_storage(
    libs: Path,
    properties: Path,
    data_dir: Path,
    heap_mb: int,
    scram: list[str],
    cluster_id: str | None = None,
) -> bool:
    """Format a new storage, with the SCRAM users (``scram``: --add-scram arguments) in its
    first metadata; False when it was formatted before."""
    if (data_dir / "meta.properties").exists():
        return False
    cluster_id = cluster_id or new_cluster_id()
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


def node_folder(state: Path, node: KafkaNode, nodes: int) -> Path:
    """One node keeps the folders it always had; each of three has its own."""
    return state if nodes == 1 else state / f"node-{node.id}"


def main() -> int:
    settings = StackSettings()
    nodes = settings.kafka_nodes
    state = settings.state_dir / "kafka"
    state.mkdir(parents=True, exist_ok=True)
    folders = [node_folder(state, node, len(nodes)) for node in nodes]
    for node, folder in zip(nodes, folders, strict=True):
        folder.mkdir(exist_ok=True)
        (folder / "server.properties").write_text(
            server_properties(settings, node, folder / "data")
        )
    libs = resolve_jars(settings.cache_dir)
    passwords, new = ensure_passwords(state / "users", PRINCIPALS)
    cluster_id = cluster_id_of([folder / "data" for folder in folders]) or new_cluster_id()
    with ThreadPoolExecutor(len(nodes)) as pool:  # three JVMs at once: a few seconds saved
        formatted = list(
            pool.map(
                lambda folder: format_storage(
                    libs, folder / "server.properties", folder / "data",
                    settings.kafka_heap_mb, scram_arguments(passwords), cluster_id,
                ),
                folders,
            )
        )  # fmt: skip
    properties = folders[0] / "server.properties"
    # A storage formatted before (an older state, or a password file removed): those users
    # are set through the loopback listener once the broker answers.
    late = {} if all(formatted) else {name: passwords[name] for name in new}

    async def initialise(children: list[subprocess.Popen[bytes]]) -> None:
        await wait_ready(children, "Kafka", wait_for_broker(settings.kafka, brokers=len(nodes)))
        created = await ensure_topics(settings.kafka)
        if late:
            host, port = settings.kafka_address
            await asyncio.to_thread(add_users, libs, properties, f"{host}:{port}", late)
        acls = await create_acls(settings.kafka, access(settings.kafka))
        log.info("%d ACLs for %d principals on the SASL listener", acls, len(PRINCIPALS))
        log.info(
            "Kafka ready at %s (%d topics created)", settings.kafka.bootstrap_servers, len(created)
        )

    commands = [
        [*kafka_command(libs, folder / "server.properties", settings.kafka_heap_mb, "kafka.Kafka"),
         str(folder / "server.properties")]
        for folder in folders
    ]  # fmt: skip
    # honcho stops every process at once; the broker goes last, so that the services stopping
    # beside it can still commit and leave their groups instead of logging a burst of
    # connection errors. A single broker's controlled shutdown takes about a second, well
    # within honcho's 5 s before SIGKILL. Of three nodes, one that dies alone (a test's
    # SIGKILL) leaves the others running: the cluster is there to survive it.
    return run_children(commands, initialise=initialise, stop_delay_s=1.5)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The readiness loop expects refused connections; aiokafka would log each one as an error.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sys.exit(main())
