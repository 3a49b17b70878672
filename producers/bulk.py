"""Bulk classification: every row of a file as a ReviewRequest, answers into an output file.

Request ids are ``<input identity>-<record number>``, the identity being the first 16 hex
digits of the input's sha256 (or ``--run-id``). A re-run over the same input therefore makes
the same ids, and skips the rows whose predictions the output file already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from contracts import Prediction, ReviewRequest, Source
from contracts.reviewfiles import ReviewFile, Row
from producers import readers
from producers.output import OutputFormat, PredictionWriter, answered_ids
from producers.pacing import Pacer
from producers.readers import OnBadRow
from producers.report import Report
from producers.settings import Settings
from producers.traffic import Traffic


@dataclass(frozen=True)
class BulkOptions:
    output: Path | None = None
    output_format: OutputFormat = OutputFormat.AUTO
    wait: bool = False  # an output file implies waiting
    rate: float | None = None
    answer_timeout_s: float | None = None  # None: the settings' answer_timeout_s
    on_bad_row: OnBadRow = OnBadRow.SKIP
    run_id: str | None = None
    progress: bool = True


def request_id(identity: str, row: Row) -> str:
    return f"{identity}-{row.number}"


async def run_bulk(
    settings: Settings,
    source: ReviewFile,
    options: BulkOptions,
    stop: asyncio.Event | None = None,
) -> Report:
    stop = stop or asyncio.Event()
    started = time.monotonic()
    report = Report(command="bulk")
    scan = readers.scan(source)
    report.rows, report.bad_rows, report.bad = scan.rows, scan.bad_count, scan.bad
    scan.enforce(options.on_bad_row, source.title)
    identity = options.run_id or readers.digest(source.path)[:16]
    wait = options.wait or options.output is not None
    done: set[str] = set()
    if options.output is not None:
        done = answered_ids(options.output, options.output_format)
        report.output = str(options.output)
        foreign = sum(1 for rid in done if not rid.startswith(f"{identity}-"))
        if foreign:
            report.notes.append(
                f"{options.output} also holds {foreign} prediction(s) of another input"
            )
    timeout = options.answer_timeout_s or settings.answer_timeout_s

    with contextlib.ExitStack() as resources:
        writer = None
        if options.output is not None:
            writer = resources.enter_context(
                PredictionWriter(options.output, options.output_format)
            )
        bar = resources.enter_context(
            tqdm(total=scan.rows, unit="review", disable=not options.progress, dynamic_ncols=True)
        )

        def answered(prediction: Prediction, row: Row) -> None:
            if writer is not None:
                writer.write(prediction, row)
            if row.label is not None:
                report.labelled += 1
                report.correct += int(prediction.label == row.label)

        traffic = Traffic[Row](settings, report, wait=wait, on_answer=answered, on_done=bar.update)
        async with traffic:
            pacer = Pacer(options.rate)
            for row in readers.rows(source):
                rid = request_id(identity, row)
                if rid in done:
                    report.skipped += 1
                    bar.update(1)
                    continue
                if not await pacer.wait(stop):
                    break
                await traffic.request(
                    ReviewRequest(request_id=rid, text=row.text, source=Source.PRODUCER), row
                )
            await traffic.drain(timeout, stop)
            report.interrupted = stop.is_set()
    report.elapsed_s = time.monotonic() - started
    return report
