"""Replay of a labelled stream as live traffic.

Each review goes out as a ReviewRequest (source=replay) at the set rate; its true label
follows as Feedback for that request_id after ``feedback_delay_s``, as a user's verdict would.
When predictions are awaited, the run reports the live accuracy (predictions against labels).

The stream is a labelled file, or a range of the requests topic (by offsets or timestamps),
whose requests are sent again as new ones (their known ``user_label`` becomes feedback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from itertools import islice

from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from contracts import DecodeError, Feedback, Prediction, ReviewRequest, Source, decode
from contracts.reviewfiles import BadRow, ReviewFile, Row
from producers import kafka, readers
from producers.errors import InputError
from producers.pacing import Pacer, sleep_unless
from producers.readers import OnBadRow
from producers.report import Report
from producers.settings import Settings
from producers.traffic import Traffic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayOptions:
    rate: float | None = None  # reviews per second; None: as fast as possible
    feedback: bool = True
    feedback_delay_s: float | None = None  # None: the settings' feedback_delay_s
    shuffle: bool = False
    seed: int | None = None
    limit: int | None = None
    wait: bool = True
    answer_timeout_s: float | None = None  # None: the settings' answer_timeout_s
    on_bad_row: OnBadRow = OnBadRow.SKIP
    progress: bool = True
    keep_ids: bool = False  # topic replay: send with the original request ids
    to_topic: str | None = None  # None: the requests topic


async def replay_file(
    settings: Settings,
    source: ReviewFile,
    options: ReplayOptions,
    stop: asyncio.Event | None = None,
) -> Report:
    report = Report(command="replay")
    scan = readers.scan(source, limit=None if options.shuffle else options.limit)
    report.bad_rows, report.bad = scan.bad_count, scan.bad
    scan.enforce(options.on_bad_row, source.title)
    rows: Iterable[Row]
    if options.shuffle:
        everything = list(readers.rows(source))
        random.Random(options.seed).shuffle(everything)  # noqa: S311 - sampling, not secrets
        rows = everything[: options.limit]
    else:
        rows = islice(readers.rows(source), options.limit)
    report.rows = scan.rows if options.limit is None else min(scan.rows, options.limit)
    return await _replay(settings, report, _async(rows), report.rows, options, stop, False)


async def replay_topic(
    settings: Settings,
    selection: kafka.TopicRange,
    options: ReplayOptions,
    stop: asyncio.Event | None = None,
) -> Report:
    report = Report(command="replay")
    await kafka.check_topics(settings, [selection.topic])  # a clear error before anything else
    consumer = kafka.new_consumer(settings)
    await kafka.start(consumer, settings.kafka.bootstrap_servers)
    try:
        ranges = await kafka.resolve_range(settings, consumer, selection)
        total = sum(end - start for start, end in ranges.values())
        if options.limit is not None:
            total = min(total, options.limit)
        for tp, (start, end) in sorted(ranges.items()):
            log.info(
                "replaying %s partition %d offsets [%d, %d)", tp.topic, tp.partition, start, end
            )
        rows = _topic_rows(consumer, ranges, report, options)
        return await _replay(settings, report, rows, total, options, stop, True)
    finally:
        await consumer.stop()


async def _topic_rows(
    consumer: AIOKafkaConsumer,
    ranges: dict[TopicPartition, tuple[int, int]],
    report: Report,
    options: ReplayOptions,
) -> AsyncIterator[Row]:
    number = 0
    async for record in kafka.read_range(consumer, ranges):
        number += 1
        where = f"{record.topic} partition {record.partition} offset {record.offset}"
        try:
            request = decode(record.value, ReviewRequest)
        except DecodeError as exc:
            bad = BadRow(number, where, exc.reason)
            report.bad_rows += 1
            report.bad.append(bad)
            log.warning("bad record at %s", bad)
            if options.on_bad_row is OnBadRow.FAIL:
                raise InputError(f"bad record at {bad} (--on-bad-row skip skips it)") from None
            continue
        report.rows += 1
        yield Row(number, where, request.text, request.user_label, request_id=request.request_id)
        if options.limit is not None and report.rows >= options.limit:
            return


async def _replay(
    settings: Settings,
    report: Report,
    rows: AsyncIterator[Row],
    total: int,
    options: ReplayOptions,
    stop: asyncio.Event | None,
    label_in_request: bool,
) -> Report:
    """Send the rows; a file's labels come only as feedback (as a user's verdict would), a
    topic's requests keep the ``user_label`` they had."""
    stop = stop or asyncio.Event()
    started = time.monotonic()
    delay = (
        options.feedback_delay_s
        if options.feedback_delay_s is not None
        else settings.feedback_delay_s
    )
    timeout = options.answer_timeout_s or settings.answer_timeout_s

    def answered(prediction: Prediction, row: Row) -> None:
        if row.label is not None:
            report.labelled += 1
            report.correct += int(prediction.label == row.label)

    with tqdm(total=total, unit="review", disable=not options.progress, dynamic_ncols=True) as bar:
        traffic = Traffic[Row](
            settings,
            report,
            wait=options.wait,
            on_answer=answered,
            on_done=bar.update,
            send_to=options.to_topic,
            feedback=options.feedback,
        )
        async with traffic:
            queue = FeedbackQueue(traffic, report, delay, stop)
            feeder = asyncio.create_task(queue.run(), name="feedback")
            try:
                pacer = Pacer(options.rate)
                async for row in rows:
                    if feeder.done():
                        feeder.result()  # feedback could not be sent: stop and say why
                    if not await pacer.wait(stop):
                        break
                    request = ReviewRequest(
                        text=row.text,
                        source=Source.REPLAY,
                        user_label=row.label if label_in_request else None,
                    )
                    if options.keep_ids and row.request_id is not None:
                        request = request.model_copy(update={"request_id": row.request_id})
                    delivered = await traffic.request(request, row)
                    if options.feedback and row.label is not None:
                        feedback = Feedback(
                            request_id=request.request_id, label=row.label, source=Source.REPLAY
                        )
                        queue.put(feedback, delivered)
            except BaseException:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
                raise
            queue.close()
            await feeder
            await traffic.drain(timeout, stop)
            report.interrupted = stop.is_set()
    report.elapsed_s = time.monotonic() - started
    return report


class FeedbackQueue:
    """Feedback waiting for its time: the delay is the same for all, so the queue is FIFO.

    Feedback whose request was not delivered is not sent (it would answer nothing). When the
    run is stopped, what is queued is sent at once, so every delivered request keeps its label.
    """

    def __init__(self, traffic: Traffic[Row], report: Report, delay_s: float, stop: asyncio.Event):
        self._traffic = traffic
        self._report = report
        self._delay_s = delay_s
        self._stop = stop
        self._items: deque[tuple[float, Feedback, asyncio.Future[bool]]] = deque()
        self._added = asyncio.Event()
        self._closed = False

    def put(self, feedback: Feedback, delivered: asyncio.Future[bool]) -> None:
        self._items.append((time.monotonic() + self._delay_s, feedback, delivered))
        self._added.set()

    def close(self) -> None:
        self._closed = True
        self._added.set()

    async def run(self) -> None:
        while True:
            if not self._items:
                if self._closed:
                    return
                self._added.clear()
                await self._added.wait()
                continue
            due, feedback, delivered = self._items[0]
            await sleep_unless(self._stop, due - time.monotonic())
            self._items.popleft()
            if await delivered:
                await self._traffic.feedback(feedback)
            else:
                self._report.feedback_failed += 1


async def _async(rows: Iterable[Row]) -> AsyncIterator[Row]:
    for row in rows:
        yield row
