"""What a cluster has besides the dev overlay, as plain podman pods and Secrets: Kafka
(Strimzi's), PostgreSQL (CloudNativePG's) and the MLflow server (``external/mlflow.yaml``),
with the Secrets the operators and an admin make.

Operators do not run under podman, so the local stand-in images play their part:

- Kafka: the stand-in image as one KRaft node with Strimzi's TLS listener (9093: SASL_SSL,
  SCRAM-SHA-512, ACLs by KRaft's StandardAuthorizer) under a certificate of a CA made here,
  whose ``ca.crt`` is the Secret ``kafka-cluster-ca-cert``; a plaintext listener on the pod's
  loopback stands for the operator's own access (users and ACLs are made through it). One
  Secret per KafkaUser with its ``password``, as Strimzi's User Operator makes them.
- PostgreSQL: the stand-in image with the owner's password, its ``mlflow`` database made
  by the compose file's init script; the login roles are made as CloudNativePG's managed roles
  would be (``python -m stats.roles``, by the smoke test).
- MLflow: ``external/mlflow.yaml``'s Deployment and PersistentVolumeClaim themselves, with the
  Secrets ``mlflow-store``, ``mlflow-users`` and ``mlflow-credentials`` made from fresh
  passwords (``deploy.mlflow_access``).

Each is played on the run's network under the host name the overlay's settings use (a network
alias), so the pods reach them unchanged.
"""

from __future__ import annotations

import datetime
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contracts.kafka_access import PRINCIPALS
from deploy import mlflow_access
from deploy.podman.kube_manifests import Manifest, config_data, load, secret, secret_data

KAFKA_PORT = 9093  # the TLS listener
KAFKA_ADMIN_PORT = 9092  # plaintext, the pod's loopback only: the operator's access
KAFKA_CLUSTER_ID = "Ejg0lp_5SLyBVB3-svf82Q"


@dataclass(frozen=True)
class Hosts:
    """Where the overlay's settings look for each service."""

    kafka: str
    postgres: str
    mlflow: str
    mlflow_uri: str

    @classmethod
    def of(cls, overlay: list[Manifest], app_secret: Manifest) -> Hosts:
        kafka = config_data(overlay, "kafka-settings")["RS_KAFKA_BOOTSTRAP_SERVERS"]
        mlflow = urlsplit(config_data(overlay, "mlflow-settings")["MLFLOW_TRACKING_URI"])
        database = urlsplit(secret_data(app_secret)["DATABASE_URL"])
        return cls(
            kafka=kafka.split(",")[0].rsplit(":", 1)[0],
            postgres=str(database.hostname),
            mlflow=str(mlflow.hostname),
            mlflow_uri=mlflow.geturl(),
        )


@dataclass(frozen=True)
class Passwords:
    owner_url: str  # the database owner's (the app Secret's DATABASE_URL)
    writer: str
    reader: str
    kafka: dict[str, str]  # principal -> password
    mlflow: dict[str, str]  # user (and server secret) -> value

    @classmethod
    def make(cls, app_secret: Manifest) -> Passwords:
        values = secret_data(app_secret)
        with tempfile.TemporaryDirectory() as folder:
            mlflow_access.ensure_password_files(Path(folder))
            mlflow_access.server_secrets(Path(folder))
            mlflow = {p.name: p.read_text().strip() for p in Path(folder).iterdir()}
        return cls(
            owner_url=values["DATABASE_URL"],
            writer=str(urlsplit(values["DATABASE_URL_WRITER"]).password),
            reader=str(urlsplit(values["DATABASE_URL_READER"]).password),
            kafka={p: secrets.token_urlsafe(24) for p in PRINCIPALS},
            mlflow=mlflow,
        )

    @property
    def owner(self) -> str:
        return str(urlsplit(self.owner_url).password)

    def mlflow_store(self, hosts: Hosts) -> str:
        user = urlsplit(self.owner_url).username
        return f"postgresql+psycopg2://{user}:{self.owner}@{hosts.postgres}:5432/mlflow"


def certificates(host: str) -> tuple[str, str]:
    """A CA (its certificate, PEM) and, signed by it, the broker's key and certificate for
    ``host`` (one PEM: Kafka's PEM key store)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rs-kube-smoke cluster CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    chain = cert.public_bytes(pem).decode() + ca.public_bytes(pem).decode()
    return ca.public_bytes(pem).decode(), key_pem + chain


def operator_secrets(hosts: Hosts, passwords: Passwords, ca: str) -> list[Manifest]:
    """The Secrets the overlay's pods read that the operators or an admin make."""
    return [
        *(secret(principal, {"password": pw}) for principal, pw in passwords.kafka.items()),
        secret("kafka-cluster-ca-cert", {"ca.crt": ca}),
        secret("mlflow-credentials", passwords.mlflow),
        secret("mlflow-users", passwords.mlflow),
        secret("mlflow-store", {"MLFLOW_BACKEND_STORE_URI": passwords.mlflow_store(hosts)}),
    ]


def kafka(hosts: Hosts, image: str, key_store: str) -> list[Manifest]:
    """One KRaft node: Strimzi's TLS listener for the pods, the operator's on loopback."""
    listener = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    env = {
        "CLUSTER_ID": KAFKA_CLUSTER_ID,
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@127.0.0.1:9094",
        "KAFKA_LISTENERS": f"OPERATOR://127.0.0.1:{KAFKA_ADMIN_PORT},CONTROLLER://127.0.0.1:9094,"
        f"TLS://:{KAFKA_PORT}",
        "KAFKA_ADVERTISED_LISTENERS": f"OPERATOR://127.0.0.1:{KAFKA_ADMIN_PORT},"
        f"TLS://{hosts.kafka}:{KAFKA_PORT}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "OPERATOR:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "TLS:SASL_SSL",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "OPERATOR",
        "KAFKA_SASL_ENABLED_MECHANISMS": "SCRAM-SHA-512",
        "KAFKA_LISTENER_NAME_TLS_SCRAM___SHA___512_SASL_JAAS_CONFIG": listener,
        "KAFKA_LISTENER_NAME_TLS_SSL_KEYSTORE_TYPE": "PEM",
        "KAFKA_LISTENER_NAME_TLS_SSL_KEYSTORE_LOCATION": "/etc/kafka-tls/broker.pem",
        # ACLs decide on the TLS listener; the operator's loopback one is a super user.
        "KAFKA_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "KAFKA_SUPER_USERS": "User:ANONYMOUS",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_HEAP_OPTS": "-Xms512m -Xmx512m",
    }
    check = "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server "
    check += f"127.0.0.1:{KAFKA_ADMIN_PORT}"
    return [
        secret("kafka-tls", {"broker.pem": key_store}),
        pod("kafka", {
            "name": "kafka", "image": image,
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "ports": [{"name": "tls", "containerPort": KAFKA_PORT}],
            # A JVM start: slow on a busy machine (over 20 s at load average 40).
            "readinessProbe": {"exec": {"command": ["sh", "-c", f"{check} >/dev/null 2>&1"]},
                               "periodSeconds": 5, "timeoutSeconds": 60},
            "volumeMounts": [{"name": "tls", "mountPath": "/etc/kafka-tls", "readOnly": True},
                             {"name": "data", "mountPath": "/var/lib/kafka/data"}],
        }, volumes=[{"name": "tls", "secret": {"secretName": "kafka-tls"}},
                    {"name": "data", "emptyDir": {}}]),
    ]  # fmt: skip


def postgres(passwords: Passwords, image: str, initdb: Path) -> list[Manifest]:
    """PostgreSQL with the owner's role and database, and MLflow's database (initdb)."""
    owner = urlsplit(passwords.owner_url)
    return [
        secret("postgres-owner", {"POSTGRES_PASSWORD": passwords.owner}),
        pod("postgres", {
            "name": "postgres", "image": image,
            "env": [
                {"name": "POSTGRES_USER", "value": owner.username},
                {"name": "POSTGRES_DB", "value": owner.path.lstrip("/")},
                {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {
                    "name": "postgres-owner", "key": "POSTGRES_PASSWORD"}}},
            ],
            "ports": [{"name": "postgres", "containerPort": 5432}],
            "readinessProbe": {"exec": {"command": [
                "pg_isready", "-h", "127.0.0.1", "-U", owner.username, "-d", "mlflow"]},
                "periodSeconds": 2, "timeoutSeconds": 5},
            "volumeMounts": [{"name": "initdb", "mountPath": "/docker-entrypoint-initdb.d",
                              "readOnly": True},
                             {"name": "data", "mountPath": "/var/lib/postgresql"}],
        }, volumes=[{"name": "initdb", "hostPath": {"path": str(initdb), "type": "Directory"}},
                    {"name": "data", "emptyDir": {}}]),
    ]  # fmt: skip


def mlflow(external: Path) -> list[Manifest]:
    """external/mlflow.yaml's server and its volume (its webhook Job is left out: podman runs
    no Jobs, and the watcher polls the registry without it)."""
    return [m for m in load(external) if m["kind"] in ("Deployment", "PersistentVolumeClaim")]


def pod(name: str, container: Manifest, volumes: list[Manifest]) -> Manifest:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container], "volumes": volumes}}  # fmt: skip
