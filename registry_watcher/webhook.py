"""MLflow's registry webhooks: a signed nudge to look now; the registry stays the source of truth.

MLflow (>= 3.3, SQL store) posts ``model_version_alias.created`` (and ``.deleted``) to the
watcher when an alias moves. The body is JSON ``{"entity", "action", "timestamp", "data":
{"name", "alias", "version"}}``; the headers carry a delivery id, a Unix timestamp and
``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`` under the webhook's secret
(``mlflow/webhooks/delivery.py``, the Standard Webhooks scheme). It also posts
``model_version_tag.set`` (``data: {"name", "version", "key", "value"}``): a version's ``gates``
tag being recorded makes the watcher look at the next version at once
(``registry_watcher.candidates``) instead of at the next poll.

:class:`WebhookCheck` accepts a delivery only if its signature is right under the shared
secret, its timestamp lies within ``max_age_s`` of now (either way: clocks drift) and its id
was not seen within that window (a replay). A valid alias event for a watched model wakes the
poll at once; the poll then asks the registry where the alias points, as it always does. One
shortcut (``registry_watcher.shortcut``): a move to the next version the watcher checked ahead
is shipped on the delivery's word first, and the registry's answer, asked right after, corrects
it if it disagrees. The poll keeps running as the safety net for lost deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# MLflow's (mlflow/webhooks/constants.py; a test holds them to it).
WEBHOOK_SIGNATURE_HEADER = "X-MLflow-Signature"
WEBHOOK_TIMESTAMP_HEADER = "X-MLflow-Timestamp"
WEBHOOK_DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
WEBHOOK_SIGNATURE_VERSION = "v1"

PATH = "/webhooks/mlflow"
ALIAS_ENTITY = "model_version_alias"
TAG_ENTITY = "model_version_tag"
# What MLflow should send here (deploy.mlflow_webhook subscribes to these).
EVENTS = (f"{ALIAS_ENTITY}.created", f"{ALIAS_ENTITY}.deleted", f"{TAG_ENTITY}.set")


class Refused(Exception):
    """A delivery not to be trusted; ``reason`` is the metric's label, ``status`` the answer."""

    def __init__(self, reason: str, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class AliasEvent:
    model_name: str
    alias: str
    version: str | None  # None when the alias was deleted
    # When MLflow built the delivery (the payload's ``timestamp``, signed with it); None when
    # missing or unreadable: it orders deliveries that arrive out of order.
    sent_at: datetime | None = None


@dataclass(frozen=True)
class TagEvent:
    """A tag set on a model version."""

    model_name: str
    version: str
    key: str


def signature(secret: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's ``X-MLflow-Signature`` for a delivery (also what tests sign with)."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return f"{WEBHOOK_SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


@dataclass
class WebhookCheck:
    secret: bytes
    max_age_s: float
    clock: Callable[[], float] = time.time
    # delivery id -> its timestamp, for the replay check; pruned to the window
    _seen: dict[str, int] = field(default_factory=dict)

    def verify(self, headers: Mapping[str, str], body: bytes) -> AliasEvent | TagEvent | None:
        """The alias or tag event a delivery carries (None for another kind); raises
        :class:`Refused` when the delivery is not to be trusted or cannot be read."""
        delivery_id = headers.get(WEBHOOK_DELIVERY_ID_HEADER)
        stamp = headers.get(WEBHOOK_TIMESTAMP_HEADER)
        given = headers.get(WEBHOOK_SIGNATURE_HEADER)
        if not delivery_id or not stamp or not given:
            raise Refused(
                "unsigned",
                f"{WEBHOOK_SIGNATURE_HEADER}, {WEBHOOK_TIMESTAMP_HEADER} and "
                f"{WEBHOOK_DELIVERY_ID_HEADER} are required",
            )
        expected = signature(self.secret, delivery_id, stamp, body)
        # Several space-separated signatures may come while a secret is rotated.
        if not any(hmac.compare_digest(expected, s) for s in given.split()):
            raise Refused("bad_signature", "the signature does not match the shared secret")
        now = self.clock()
        try:
            sent = int(stamp)  # MLflow's: whole seconds (also keeps out "nan" and "inf")
        except ValueError:
            raise Refused("stale", f"the timestamp {stamp[:32]!r} is not a number") from None
        if abs(now - sent) > self.max_age_s:
            raise Refused(
                "stale",
                f"sent {now - sent:.0f} s from now; only {self.max_age_s:.0f} s either way "
                "are accepted",
            )
        self._forget_before(now - self.max_age_s)
        if delivery_id in self._seen:
            raise Refused("replayed", f"delivery {delivery_id[:64]} was received already")
        self._seen[delivery_id] = sent
        return _event(body)

    def _forget_before(self, oldest: float) -> None:
        # Bounded by the window: an id older than it would be refused as stale anyway.
        for key in [k for k, sent in self._seen.items() if sent < oldest]:
            del self._seen[key]


def _event(body: bytes) -> AliasEvent | TagEvent | None:
    try:
        payload = json.loads(body)
        entity, data = payload["entity"], payload["data"]
        if entity == TAG_ENTITY:
            return TagEvent(str(data["name"]), str(data["version"]), str(data["key"]))
        if entity != ALIAS_ENTITY:
            return None
        version = data.get("version")
        return AliasEvent(
            str(data["name"]),
            str(data["alias"]),
            None if version is None else str(version),
            _when(payload.get("timestamp")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Refused(
            "malformed", f"not an MLflow webhook payload ({type(exc).__name__})", status=400
        ) from None


def _when(stamp: object) -> datetime | None:
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def concerns(event: AliasEvent, model_names: Collection[str], aliases: Collection[str]) -> bool:
    """Whether the event is about an alias this watcher follows."""
    return event.model_name in model_names and event.alias in aliases
