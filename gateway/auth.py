"""API keys and roles.

A key is a random token shown once when made (``python -m gateway.keys new``); only its
sha256 is stored, in a JSON file (``RS_GATEWAY_API_KEYS_FILE``) and/or in
``RS_GATEWAY_API_KEYS``. Keys are long random tokens, not passwords, so one unsalted sha256
is enough to make a leaked file useless without making every request pay for a slow KDF.

Roles are ordered: ``viewer`` reads statistics, ``client`` also classifies and sends
feedback, ``admin`` also reads operational endpoints. Open mode (local development only)
treats every caller as admin.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from gateway.errors import Forbidden, Unauthorized

KEY_PREFIX = "rs_"
# Browsers cannot set headers on a WebSocket: the key rides in a subprotocol instead.
WS_SUBPROTOCOL = "reviewstream"
WS_KEY_SUBPROTOCOL_PREFIX = "bearer."


class Role(IntEnum):
    VIEWER = 1
    CLIENT = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Role:
        if isinstance(value, Role):
            return value
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError(f"unknown role {value!r}; expected viewer, client or admin")


RoleField = Annotated[
    Role, BeforeValidator(Role.parse), PlainSerializer(lambda r: r.label, return_type=str)
]


class KeyRecord(BaseModel):
    """One API key at rest: who it is for, its role and the sha256 of the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: RoleField
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyRecord]


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    key_sha256: str | None = None  # None in open mode


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: URL-safe characters only, so it fits a header and a WS subprotocol."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_key_file(path: Path) -> list[KeyRecord]:
    return KeyFile.model_validate(json.loads(path.read_text())).keys


class KeyRing:
    """Finds the principal behind a presented key; knows nothing about HTTP. The keys can be
    replaced while serving (the key file changed): a revoked key fails its next request, and
    whoever holds a session for it hears of the change (:meth:`changed`)."""

    def __init__(self, records: Iterable[KeyRecord], *, open_mode: bool = False) -> None:
        self.open_mode = open_mode
        self._by_hash = _principals(records)
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._by_hash)

    def replace(self, records: Iterable[KeyRecord]) -> None:
        self._by_hash = _principals(records)
        self._changed.set()  # wakes every waiter; later ones wait for the next change
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    def holds(self, principal: Principal) -> bool:
        """The principal's key is still valid, with the same name and role."""
        if self.open_mode:
            return True
        return self._by_hash.get(principal.key_sha256 or "") == principal

    def authenticate(self, key: str | None) -> Principal:
        if self.open_mode:
            return Principal("open-mode", Role.ADMIN)
        if not key:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        principal = self._by_hash.get(hash_key(key))
        if principal is None:
            raise Unauthorized("invalid API key")
        return principal

    @staticmethod
    def authorize(principal: Principal, needed: Role) -> None:
        if principal.role < needed:
            raise Forbidden(
                f"this needs the {needed.label} role; key {principal.name!r} "
                f"has {principal.role.label}"
            )


def _principals(records: Iterable[KeyRecord]) -> dict[str, Principal]:
    return {r.sha256: Principal(r.name, r.role, r.sha256) for r in records}


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return authorization  # another scheme: fails as an invalid key, not a missing one
    return headers.get("x-api-key")


def key_from_subprotocols(subprotocols: Iterable[str]) -> str | None:
    for proto in subprotocols:
        if proto.startswith(WS_KEY_SUBPROTOCOL_PREFIX):
            return proto.removeprefix(WS_KEY_SUBPROTOCOL_PREFIX)
    return None
