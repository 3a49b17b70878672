"""The most recent labelled live reviews, for the live replay gate.

The labels are PostgreSQL's, as the statistics count them: a prediction's current true label
(the latest feedback wins, corrections included), and feedback that came with its own text.
A prediction's text is not stored there; it comes from the requests topic's retention, read
from its tail. A review whose request has left the retention is skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer

from contracts import DecodeError, KafkaSettings, ReviewRequest, decode

log = logging.getLogger(__name__)

LABELLED_PREDICTIONS = """
SELECT request_id, true_label, true_label_given_at FROM predictions
WHERE true_label IS NOT NULL AND true_label_given_at IS NOT NULL
ORDER BY true_label_given_at DESC LIMIT $1
"""
LABELLED_TEXTS = """
SELECT text, label, given_at FROM feedback
WHERE request_id IS NULL AND text IS NOT NULL
ORDER BY given_at DESC LIMIT $1
"""


@dataclass(frozen=True)
class LiveReview:
    text: str
    label: int
    given_at: datetime


async def recent_labelled(
    kafka: KafkaSettings, database_url: str, *, limit: int, scan: int
) -> list[LiveReview]:
    """Up to ``limit`` labelled reviews, newest label first; at most ``scan`` requests are
    read from the tail of the requests topic to find their texts."""
    connection = await asyncpg.connect(database_url)
    try:
        predictions = await connection.fetch(LABELLED_PREDICTIONS, limit)
        with_text = await connection.fetch(LABELLED_TEXTS, limit)
    finally:
        await connection.close()
    wanted = {row["request_id"] for row in predictions}
    texts = await request_texts(kafka, wanted, scan=scan) if wanted else {}
    reviews = [
        LiveReview(texts[row["request_id"]], row["true_label"], row["true_label_given_at"])
        for row in predictions
        if row["request_id"] in texts
    ]
    reviews += [LiveReview(row["text"], row["label"], row["given_at"]) for row in with_text]
    reviews.sort(key=lambda r: r.given_at, reverse=True)
    log.info(
        "%d labelled live reviews: %d of %d labelled predictions still in %s, %d feedback texts",
        min(len(reviews), limit), len(reviews) - len(with_text), len(predictions),
        kafka.requests_topic, len(with_text),
    )  # fmt: skip
    return reviews[:limit]


async def request_texts(
    kafka: KafkaSettings, wanted: set[str], *, scan: int, limit_s: float = 60.0
) -> dict[str, str]:
    """request_id -> text for the wanted requests among the last ``scan`` of the topic (read
    for at most ``limit_s``: records that retention deletes meanwhile are not waited for)."""
    consumer = AIOKafkaConsumer(
        kafka.requests_topic,  # no group: every partition, assigned at start
        **kafka.client(),
        client_id="rs-export-live-replay",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = sorted(consumer.assignment())
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        per_partition = max(1, scan // max(1, len(partitions)))
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - per_partition))
        found: dict[str, str] = {}
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        deadline = time.monotonic() + limit_s
        while remaining and len(found) < len(wanted) and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    try:
                        request = decode(record.value, ReviewRequest)
                    except DecodeError:
                        continue  # the workers dead-lettered it; it was never classified
                    if request.request_id in wanted:
                        found[request.request_id] = request.text
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return found
    finally:
        await consumer.stop()
