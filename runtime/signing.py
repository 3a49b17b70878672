"""Signed records on the models topic: only the release component can make the fleet serve a model.

The Kafka ACL lets only the release principal write ``models.events``; the signature is the
second lock, checked by every reader, so that a broker credential that leaks (or a topic
written around the ACL) still cannot ship a model. The release component signs each record
(an event or a tombstone) with an Ed25519 private key; the readers hold only public keys, so
a compromised worker cannot sign. Several public keys may be trusted at once: a new key is
rolled out to the readers first, then to the release component, then the old one is dropped.

The signature covers the record's key and value bytes exactly as sent (no re-encoding), and
travels in two headers: the key's id and the signature. Python: ``python -m runtime.signing
new --private release.pem --public release.pub``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import CommaSeparated

SIGNATURE_HEADER = "rs-signature"
KEY_ID_HEADER = "rs-key-id"
# A domain tag: a signature made for these records means nothing anywhere else.
DOMAIN = b"reviewstream/models-topic/v1\n"

Headers = Sequence[tuple[str, bytes]]


class SigningKey(BaseSettings):
    """``RS_MODELS_SIGNING_KEY_FILE``: the release component's private key."""

    model_config = SettingsConfigDict(env_prefix="RS_MODELS_", frozen=True)

    signing_key_file: Path | None = Field(
        None, description="Ed25519 private key (PEM) that signs the models topic (release only)"
    )

    def signer(self) -> Signer | None:
        return None if self.signing_key_file is None else Signer.from_file(self.signing_key_file)


class TrustedKeys(BaseSettings):
    """``RS_MODELS_VERIFY_KEY_FILES``: the public keys every reader of the models topic trusts."""

    model_config = SettingsConfigDict(env_prefix="RS_MODELS_", frozen=True)

    verify_key_files: CommaSeparated = Field(
        default_factory=list,
        description="Ed25519 public keys (PEM) whose signatures the models topic's readers "
        "accept, comma-separated; empty: unsigned records are accepted (local development)",
    )

    def verifier(self, refused: Counter | None = None) -> Verifier:
        """The readers' check; ``refused`` (see :func:`refused_counter`) counts refusals."""
        return Verifier.from_files((Path(p) for p in self.verify_key_files), refused)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _signed_bytes(key: bytes | None, value: bytes | None) -> bytes:
    # Lengths first: (key "ab", value "c") and (key "a", value "bc") sign differently, and a
    # tombstone (no value) differs from an empty value.
    def part(data: bytes | None) -> bytes:
        return b"\xff" * 8 if data is None else len(data).to_bytes(8, "big") + data

    return DOMAIN + part(key) + part(value)


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise ValueError(f"{path} is not an Ed25519 private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(key)

    def headers(self, key: bytes | None, value: bytes | None) -> list[tuple[str, bytes]]:
        """The headers that sign a record with this ``key`` and ``value``."""
        signature = self.private.sign(_signed_bytes(key, value))
        return [
            (KEY_ID_HEADER, key_id(self.private.public_key()).encode()),
            (SIGNATURE_HEADER, signature),
        ]


@dataclass(frozen=True)
class Verifier:
    """Public keys by id; with none, every record passes (signing is off)."""

    keys: dict[str, Ed25519PublicKey]
    refused: Counter | None = None

    @classmethod
    def from_files(cls, paths: Iterable[Path], refused: Counter | None = None) -> Verifier:
        keys: dict[str, Ed25519PublicKey] = {}
        for path in paths:
            try:
                public = serialization.load_pem_public_key(path.read_bytes())
            except ValueError as exc:
                raise ValueError(f"{path} is not an Ed25519 public key: {exc}") from None
            if not isinstance(public, Ed25519PublicKey):
                raise ValueError(f"{path} is not an Ed25519 public key")
            keys[key_id(public)] = public
        return cls(keys, refused)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def refusal(self, key: bytes | None, value: bytes | None, headers: Headers) -> str | None:
        """Why this record is not to be trusted (counted), or None when it is."""
        reason = self._reason(key, value, headers)
        if reason is not None and self.refused is not None:
            self.refused.labels(reason=reason).inc()
        return reason

    def _reason(self, key: bytes | None, value: bytes | None, headers: Headers) -> str | None:
        if not self.keys:
            return None
        found = dict(headers)
        signature, kid = found.get(SIGNATURE_HEADER), found.get(KEY_ID_HEADER)
        if signature is None or kid is None:
            return "unsigned"
        public = self.keys.get(kid.decode(errors="replace"))
        if public is None:
            return "unknown_key"
        try:
            public.verify(signature, _signed_bytes(key, value))
        except InvalidSignature:
            return "bad_signature"
        return None


def refused_counter(service: str, registry: CollectorRegistry) -> Counter:
    """``rs_<service>_models_refused_total{reason}``: models-topic records not trusted."""
    return Counter(
        f"rs_{service}_models_refused",
        "Models-topic records refused (unsigned, unknown_key, bad_signature)",
        ["reason"],
        registry=registry,
    )


def new_key_pair(private_file: Path, public_file: Path) -> str:
    """Write a new Ed25519 key pair (the private file readable by its owner only); its id."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    public = private.public_key()
    public_file.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_id(public)


app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def keys() -> None:
    """Keys that sign the models topic."""


@app.command()
def new(
    private: Annotated[Path, typer.Option(help="the release component's key (made, 0600)")],
    public: Annotated[Path, typer.Option(help="the readers' key (RS_MODELS_VERIFY_KEY_FILES)")],
) -> None:
    """Make a key pair that signs the models topic; print its id."""
    if private.exists():
        raise typer.BadParameter(f"{private} exists; not overwritten", param_hint="--private")
    typer.echo(new_key_pair(private, public))


if __name__ == "__main__":
    app()
