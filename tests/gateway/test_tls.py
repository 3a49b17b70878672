"""HTTPS: the gateway serves TLS itself when given a certificate and key (made here)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from contracts import KafkaSettings
from tests.gateway_harness import kafka_env, running_gateway


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_and_wss_with_a_self_signed_certificate(
    kafka: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    env = {
        **kafka_env(kafka),
        "DATABASE_URL": database_url,
        "RS_GATEWAY_OPEN_MODE": "true",
        "RS_GATEWAY_TLS_CERTFILE": str(cert),
        "RS_GATEWAY_TLS_KEYFILE": str(key),
    }
    trust = ssl.create_default_context(cafile=str(cert))
    async with running_gateway(env, tmp_path / "gateway.log", tls=True) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, verify=trust) as https:
            assert (await https.get("/healthz")).json() == {"service": "gateway", "status": "alive"}
            assert (await https.get("/v1/session")).json()["open_mode"] is True
        async with httpx.AsyncClient(verify=ssl.create_default_context()) as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"{gateway.url}/healthz")
        async with httpx.AsyncClient() as plain:
            try:
                response = await plain.get(f"http://127.0.0.1:{gateway.port}/healthz")
                assert response.status_code != 200
            except httpx.HTTPError:
                pass  # plain HTTP on the TLS port is refused, as it should be
        async with connect(gateway.ws_url, ssl=trust, subprotocols=["reviewstream"]) as ws:  # type: ignore[list-item]
            hello = json.loads(await ws.recv())
            assert (hello["type"], hello["role"]) == ("hello", "admin")
    assert "serving on https://" in gateway.log()
