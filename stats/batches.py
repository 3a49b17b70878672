"""One batch of Kafka records -> the statistics database, or the dead-letter topic.

The core of the processor, free of faust: decode at the edge, send what can never be
processed to the topic's DLQ with the reason, and store the rest in one transaction,
retrying with exponential backoff for as long as the database is away. When the database
refuses one record of a batch for good, the batch is written again one record at a time so
that only that record goes to the DLQ. Only when :meth:`BatchProcessor.process` returns may
the caller acknowledge the batch; the outcome carries the decoded messages for the drift
monitor, decoded once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, Literal, Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_never,
)

from contracts import (
    DecodeError,
    Feedback,
    KafkaSettings,
    Message,
    Prediction,
    dead_letter,
    decode,
    decode_reply,
    encode,
)
from runtime.backoff import backoff
from runtime.records import Record
from stats.aggregates import FeedbackRow, PredictionRow
from stats.metrics import Metrics
from stats.shadow import ShadowRow, shadow_row
from stats.store import RecordRejected, StatsStore, StoreUnavailable, WriteResult

log = logging.getLogger(__name__)

Kind = Literal["prediction", "feedback", "shadow"]
Row = TypeVar("Row", PredictionRow, FeedbackRow, ShadowRow)
T = TypeVar("T")

SERVICE_NAME = "stats"


class DeadLetterSink(Protocol):
    async def send_all(self, letters: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Produce ``(topic, key, value)`` records; return once the broker has them all."""
        ...


class DeadLetterUnavailable(Exception):
    """The broker did not take a dead letter in time; retried like a database outage."""


@dataclass(frozen=True)
class BatchOutcome:
    stored: int
    duplicates: int
    dead_lettered: int
    labelled: int
    ignored: int = 0
    """valid records with nothing to store: a worker's error reply (RequestFailed), or the
    answer to an ``explain`` request (a question about a review, not traffic)"""
    messages: Sequence[Message] = field(default=(), compare=False, repr=False)
    """the decoded message of each record to store, in order (the drift monitor reads them)"""


@dataclass(frozen=True)
class Decoded(Generic[Row]):
    """A batch decoded, nothing written yet: what to store, dead-letter or ignore."""

    rows: list[tuple[Record, Row]]
    messages: list[Message]
    dead: list[tuple[Record, str, str]]
    ignored: int


class BatchProcessor:
    def __init__(
        self,
        store: StatsStore,
        sink: DeadLetterSink,
        metrics: Metrics,
        *,
        retry_max_backoff_s: float = 5.0,
    ) -> None:
        self._store = store
        self._sink = sink
        self._metrics = metrics
        self._max_backoff_s = retry_max_backoff_s

    async def predictions(self, records: Sequence[Record]) -> BatchOutcome:
        return await self.process("prediction", records)

    async def feedback(self, records: Sequence[Record]) -> BatchOutcome:
        return await self.process("feedback", records)

    async def shadow(self, records: Sequence[Record]) -> BatchOutcome:
        """A challenger's predictions (the shadow predictions topic)."""
        return await self.process("shadow", records)

    async def process(self, kind: Kind, records: Sequence[Record]) -> BatchOutcome:
        """Decode a batch of ``kind`` and store it."""
        started = time.perf_counter()
        store = self._store
        if kind == "prediction":
            outcome = await self._store_rows(
                kind, _decode(records, _prediction), store.write_predictions
            )
        elif kind == "feedback":
            outcome = await self._store_rows(
                kind, _decode(records, _feedback), store.write_feedback
            )
        else:
            outcome = await self._store_rows(
                kind, _decode(records, shadow_row), store.write_shadow_predictions
            )
        m = self._metrics
        m.records.labels(kind, "stored").inc(outcome.stored)
        m.records.labels(kind, "duplicate").inc(outcome.duplicates)
        m.records.labels(kind, "dead_lettered").inc(outcome.dead_lettered)
        m.records.labels(kind, "ignored").inc(outcome.ignored)
        m.labelled.inc(outcome.labelled)
        m.batch_records.labels(kind).observe(len(records))
        m.batch_seconds.labels(kind).observe(time.perf_counter() - started)
        return outcome

    async def _store_rows(
        self,
        kind: Kind,
        batch: Decoded[Row],
        write: Callable[[Sequence[Row]], Awaitable[WriteResult]],
    ) -> BatchOutcome:
        """Write the rows in one transaction (one record at a time when the database refuses
        one), dead-letter what cannot be stored; retried while the database is away."""
        dead = list(batch.dead)
        results: list[WriteResult] = []
        if batch.rows:
            try:
                rows = [row for _, row in batch.rows]
                results.append(await self._retrying(kind, partial(write, rows)))
            except RecordRejected as exc:
                log.warning("%s batch refused (%s); writing it one record at a time", kind, exc)
                for record, row in batch.rows:
                    try:
                        results.append(await self._retrying(kind, partial(write, [row])))
                    except RecordRejected as one:
                        dead.append((record, one.reason, "RecordRejected"))
            self._metrics.db_up.set(1)
        if dead:
            await self._dead_letters(kind, dead)
        return BatchOutcome(
            stored=sum(r.inserted for r in results),
            duplicates=sum(r.duplicates for r in results),
            dead_lettered=len(dead),
            labelled=sum(r.labelled for r in results),
            ignored=batch.ignored,
            messages=batch.messages,
        )

    async def _dead_letters(self, kind: Kind, dead: Sequence[tuple[Record, str, str]]) -> None:
        """Send every dead letter of the batch, each to its topic's DLQ, and wait for the acks."""
        letters = []
        for record, reason, error_type in dead:
            letter = dead_letter(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value,
                reason=reason,
                error_type=error_type,
                service=SERVICE_NAME,
            )
            letters.append((KafkaSettings.dlq(record.topic), record.key, encode(letter)))
            log.warning(
                "%s %s[%d]@%d -> dead letter: %s",
                kind,
                record.topic,
                record.partition,
                record.offset,
                reason,
            )
        await self._retrying(kind, partial(self._sink.send_all, letters))
        for record, _, error_type in dead:
            self._metrics.dead_letters.labels(record.topic, error_type).inc()

    async def _retrying(self, kind: Kind, call: Callable[[], Awaitable[T]]) -> T:
        """Retry transient failures forever, with capped exponential backoff.

        Forever on purpose: nothing is acknowledged while this waits, so the records stay in
        Kafka; stopping the service cancels the wait and the batch is read again on restart.
        """
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((StoreUnavailable, DeadLetterUnavailable)),
            wait=backoff(self._max_backoff_s),
            stop=stop_never,
            before_sleep=lambda state: self._on_retry(kind, state),
            reraise=True,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity retries forever")  # pragma: no cover

    def _on_retry(self, kind: Kind, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, StoreUnavailable):
            self._metrics.db_up.set(0)
            self._metrics.db_retries.labels(kind).inc()
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s batch not stored (attempt %d, retrying in %.1fs): %s",
            kind,
            state.attempt_number,
            wait,
            exc,
        )


def _decode(
    records: Sequence[Record], parse: Callable[[bytes | None], tuple[Row, Message] | None]
) -> Decoded[Row]:
    rows: list[tuple[Record, Row]] = []
    messages: list[Message] = []
    dead: list[tuple[Record, str, str]] = []
    ignored = 0
    for record in records:
        try:
            parsed = parse(record.value)
        except DecodeError as exc:
            dead.append((record, exc.reason, "DecodeError"))
            continue
        if parsed is None:
            ignored += 1
        else:
            rows.append((record, parsed[0]))
            messages.append(parsed[1])
    return Decoded(rows, messages, dead, ignored)


def _prediction(raw: bytes | None) -> tuple[PredictionRow, Message] | None:
    """A prediction to store; an error reply (RequestFailed) or an explanation answers its
    sender and stops here."""
    reply = decode_reply(raw)
    if isinstance(reply, Prediction) and reply.explanation is None:
        return PredictionRow.from_message(reply), reply
    return None


def _feedback(raw: bytes | None) -> tuple[FeedbackRow, Message]:
    feedback = decode(raw, Feedback)
    return FeedbackRow.from_message(feedback), feedback
