"""What a batch sends: its predictions and error replies to the predictions topic, and its
refused records to the requests topic's DLQ, as futures that its settlement awaits.

A shadow worker sends to the shadow predictions topic and no dead letters (``dlq_topic`` None):
the serving workers already dead-letter every bad request once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from contracts import Prediction, RequestFailed, dead_letter, encode
from workers import kafka
from workers.batch import Accepted, Rejected

log = logging.getLogger(__name__)


async def send(
    producer: AIOKafkaProducer,
    *,
    predictions_topic: str,
    reply_partitions: int,
    dlq_topic: str | None,
    answered: Sequence[tuple[Accepted, Prediction]],
    refused: Sequence[tuple[Rejected, RequestFailed | None]],
    service: str,
) -> list[asyncio.Future[Any]]:
    """Queue every record of the batch; return the futures of their acknowledgements."""
    replies = [(a.record.partition, p.request_id, encode(p)) for a, p in answered]
    replies += [(r.record.partition, e.request_id, encode(e)) for r, e in refused if e]
    # Co-partitioned: a reply goes to its request's partition number (both topics are keyed
    # by request_id), so the replies leave as one record batch per partition, with no key
    # hash and no future per message. A retried request still lands where its first did.
    sends = await kafka.send_to_partitions(
        producer,
        predictions_topic,
        ((partition % reply_partitions, rid.encode(), value) for partition, rid, value in replies),
    )
    if dlq_topic is None:
        return sends
    for r, _ in refused:
        log.warning(
            "dead-lettering %s[%d]@%d: %s", r.record.topic, r.record.partition, r.record.offset,
            r.reason,
        )  # fmt: skip
        letter = dead_letter(
            topic=r.record.topic,
            partition=r.record.partition,
            offset=r.record.offset,
            key=r.record.key,
            value=r.record.value,
            reason=r.reason,
            error_type=r.error_type,
            service=service,
        )
        sends.append(await producer.send(dlq_topic, encode(letter), key=r.record.key))
    return sends
