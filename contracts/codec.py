"""Bytes <-> contract objects, done once at the edge of every consumer and producer."""

from __future__ import annotations

import base64
import json
from typing import TypeVar, get_args

from pydantic import ValidationError

from contracts.messages import DeadLetter, Message, Prediction, RequestFailed

M = TypeVar("M", bound=Message)


class DecodeError(ValueError):
    """A record that can never be processed: it belongs in the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode()


def decode(raw: bytes | None, model: type[M]) -> M:
    """Parse one record value, or raise DecodeError saying exactly what is wrong."""
    if raw is None:
        raise DecodeError("empty record value (tombstone)")
    # Fast path for good records: pydantic parses the bytes in one step. An explicit
    # schema_version is required, so a record without one takes the diagnosing path below.
    try:
        message = model.model_validate_json(raw)
    except ValidationError:
        pass
    else:
        if "schema_version" in message.model_fields_set:
            return message
    # Say exactly what is wrong, step by step.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"value is not UTF-8: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"value is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version not in supported_versions(model):
        raise DecodeError(f"unsupported schema_version {version!r} for {model.__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(f"invalid {model.__name__}: {_summarize(exc)}") from None


def decode_reply(raw: bytes | None) -> Prediction | RequestFailed:
    """A record of the predictions topic: a Prediction, or (version 2) a RequestFailed."""
    # Only a RequestFailed has the key "error"; elsewhere the token appears only as a whole
    # string value (a worker named "error"), so the hint picks the order, never the answer.
    order: tuple[type[Prediction] | type[RequestFailed], ...] = (Prediction, RequestFailed)
    if raw is not None and b'"error"' in raw:
        order = (RequestFailed, Prediction)
    try:
        return decode(raw, order[0])
    except DecodeError as first:
        try:
            return decode(raw, order[1])
        except DecodeError:
            raise first from None


def supported_versions(model: type[Message]) -> tuple[int, ...]:
    """The schema versions a consumer of ``model`` accepts side by side."""
    return get_args(model.model_fields["schema_version"].annotation)


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    error_type: str,
    service: str,
) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=base64.b64encode(key).decode() if key is not None else None,
        value=base64.b64encode(value or b"").decode(),
        reason=reason,
        error_type=error_type,
        service=service,
    )


def _summarize(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
