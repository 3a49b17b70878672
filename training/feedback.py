"""Every labelled live review, with the source of the label that stands: PostgreSQL and Kafka.

The labels are the statistics database's, as :mod:`export.live` reads them for the replay
gate, but all of them and with their source: a prediction's current true label (its source is
the feedback it came from, so a label from a refused source is refused even when it corrects
an allowed one), and feedback that came with its own text. A prediction's text comes from the
requests topic (``export.live.request_texts``); one that left the retention is skipped.
"""

from __future__ import annotations

import logging

import asyncpg

from contracts import KafkaSettings
from export.live import request_texts
from training.snapshot import LiveLabel

log = logging.getLogger(__name__)

LABELLED_PREDICTIONS = """
SELECT p.request_id, p.true_label, p.true_label_given_at, f.source
FROM predictions p JOIN feedback f ON f.feedback_id = p.true_label_feedback_id
WHERE p.true_label IS NOT NULL
"""
FEEDBACK_TEXTS = "SELECT text, label, given_at, source FROM feedback WHERE text IS NOT NULL"
# How many labelled reviews allowed sources have given: the new-feedback trigger compares it
# with the count recorded on the last snapshot (no Kafka read needed to decide).
COUNT_ALLOWED = """
SELECT (SELECT count(*) FROM predictions p
        JOIN feedback f ON f.feedback_id = p.true_label_feedback_id
        WHERE p.true_label IS NOT NULL AND f.source = ANY($1::text[]))
     + (SELECT count(*) FROM feedback WHERE text IS NOT NULL AND source = ANY($1::text[]))
"""


async def count_allowed(database_url: str, sources: tuple[str, ...]) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval(COUNT_ALLOWED, list(sources))
    finally:
        await connection.close()
    return count


async def live_labels(
    kafka: KafkaSettings, database_url: str, *, scan: int, limit_s: float
) -> list[LiveLabel]:
    """Every labelled review whose text is known, from any source (the snapshot filters them,
    and counts what it refused)."""
    connection = await asyncpg.connect(database_url)
    try:
        predictions = await connection.fetch(LABELLED_PREDICTIONS)
        with_text = await connection.fetch(FEEDBACK_TEXTS)
    finally:
        await connection.close()
    wanted = {row["request_id"] for row in predictions}
    texts = await request_texts(kafka, wanted, scan=scan, limit_s=limit_s) if wanted else {}
    labels = [
        LiveLabel(texts[r["request_id"]], r["true_label"], r["source"], r["true_label_given_at"])
        for r in predictions
        if r["request_id"] in texts
    ]
    labels += [LiveLabel(r["text"], r["label"], r["source"], r["given_at"]) for r in with_text]
    log.info(
        "%d labelled live reviews: %d of %d labelled predictions found in %s, %d feedback texts",
        len(labels), len(labels) - len(with_text), len(predictions), kafka.requests_topic,
        len(with_text),
    )  # fmt: skip
    return labels
