"""``python -m producers bulk|replay``: the command line, its wiring and its exit codes.

Exit codes: 0 done; 1 unusable input, or a bad row with ``--on-bad-row fail``; 2 Kafka cannot
be reached (or a topic is missing, or the settings are invalid); 3 done, but some requests
failed or got no answer in time; 130 interrupted (Ctrl-C or SIGTERM: what was sent is
flushed, answers received so far are kept, the summary is printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from tqdm.contrib.logging import logging_redirect_tqdm

from contracts.reviewfiles import InputFormat, ReviewFile
from producers.bulk import BulkOptions, run_bulk
from producers.errors import ProducerError
from producers.kafka import TopicRange, describe
from producers.output import OutputFormat
from producers.readers import OnBadRow
from producers.replay import ReplayOptions, replay_file, replay_topic
from producers.report import Report
from producers.settings import Settings

log = logging.getLogger("producers")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Send reviews to reviewstream from files or earlier traffic (Kafka settings: RS_KAFKA_*).",
)

Work = Callable[[Settings, asyncio.Event], Awaitable[Report]]


def parse_moment(value: str | None) -> datetime | None:
    """ISO 8601 (naive means UTC) or epoch milliseconds."""
    if value is None:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither ISO 8601 (2026-06-01T12:00:00Z) nor epoch milliseconds"
        ) from None


FormatOption = Annotated[
    InputFormat, typer.Option("--format", help="input format; auto: by name, else by content")
]
TextColumn = Annotated[str, typer.Option(help="CSV column or JSON key of the review text")]
LabelColumn = Annotated[str, typer.Option(help="CSV column or JSON key of the true label (0/1)")]
Rate = Annotated[
    float | None,
    typer.Option(min=0.001, help="reviews per second (token bucket); default: as fast as possible"),
]
AnswerTimeout = Annotated[
    float | None,
    typer.Option(
        min=0.001,
        help="stop waiting once no prediction came for this many seconds after the last send"
        " [default: RS_PRODUCER_ANSWER_TIMEOUT_S or 30]",
    ),
]
BadRowPolicy = Annotated[
    OnBadRow,
    typer.Option(help="bad rows are always reported by line; skip them, or stop before sending"),
]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar on stderr")]
ReportJson = Annotated[
    Path | None, typer.Option(help="also write the summary as JSON to this file")
]


@app.command()
def bulk(
    input: Annotated[
        str, typer.Argument(help="CSV, JSONL or text file (maybe .gz), or - for stdin")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="write the predictions here (JSONL, or CSV by name); a re-run resumes it",
        ),
    ] = None,
    input_format: FormatOption = InputFormat.AUTO,
    output_format: Annotated[OutputFormat, typer.Option()] = OutputFormat.AUTO,
    text_column: TextColumn = "text",
    label_column: LabelColumn = "label",
    wait: Annotated[
        bool | None,
        typer.Option(
            "--wait/--no-wait",
            help="wait for the predictions [default: wait when --output is given]",
        ),
    ] = None,
    rate: Rate = None,
    answer_timeout: AnswerTimeout = None,
    on_bad_row: BadRowPolicy = OnBadRow.SKIP,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="names the input for request ids [default: its sha256's first 16 digits]"
        ),
    ] = None,
    progress: Progress = True,
    report_json: ReportJson = None,
) -> None:
    """Classify a file of reviews through the workers; resumable with --output."""
    if output is not None and wait is False:
        raise typer.BadParameter("--output needs the predictions: drop --no-wait")
    waits = wait if wait is not None else output is not None
    options = BulkOptions(
        output=output,
        output_format=output_format,
        wait=waits,
        rate=rate,
        answer_timeout_s=answer_timeout,
        on_bad_row=on_bad_row,
        run_id=run_id,
        progress=progress,
    )
    with _input_path(input) as path:
        source = ReviewFile(path, input_format, text_column, label_column, name=_title(input))
        _execute(
            lambda settings, stop: run_bulk(settings, source, options, stop),
            waited=waits,
            feedback=False,
            report_json=report_json,
        )


@app.command()
def replay(
    input: Annotated[
        str | None,
        typer.Argument(
            help="labelled CSV or JSONL (maybe .gz), or - for stdin; or use --from-topic"
        ),
    ] = None,
    rate: Rate = None,
    feedback: Annotated[
        bool, typer.Option("--feedback/--no-feedback", help="send each label as feedback")
    ] = True,
    feedback_delay: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="seconds between a request and its feedback"
            " [default: RS_PRODUCER_FEEDBACK_DELAY_S or 2]",
        ),
    ] = None,
    shuffle: Annotated[bool, typer.Option(help="send the rows in a random order")] = False,
    seed: Annotated[int | None, typer.Option(help="seed for --shuffle")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="send at most this many reviews")] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="wait for the predictions (live accuracy)")
    ] = True,
    answer_timeout: AnswerTimeout = None,
    on_bad_row: BadRowPolicy = OnBadRow.SKIP,
    input_format: FormatOption = InputFormat.AUTO,
    text_column: TextColumn = "text",
    label_column: LabelColumn = "label",
    from_topic: Annotated[
        str | None,
        typer.Option(help="replay the ReviewRequests of this topic's range instead of a file"),
    ] = None,
    partition: Annotated[
        list[int] | None, typer.Option(help="topic partition(s) to read [default: all]")
    ] = None,
    start_offset: Annotated[
        int | None, typer.Option(min=0, help="first offset (inclusive), in each partition")
    ] = None,
    end_offset: Annotated[
        int | None, typer.Option(min=0, help="last offset (exclusive), in each partition")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="from the first record at or after this time (ISO 8601 or epoch ms)"),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="up to the first record at or after this time (exclusive)")
    ] = None,
    to_topic: Annotated[
        str | None, typer.Option(help="send to this topic [default: the requests topic]")
    ] = None,
    keep_ids: Annotated[
        bool, typer.Option(help="topic replay: keep the original request ids")
    ] = False,
    progress: Progress = True,
    report_json: ReportJson = None,
) -> None:
    """Replay labelled reviews as live traffic: requests, then their labels as feedback."""
    topic_only = {
        "--partition": partition,
        "--start-offset": start_offset,
        "--end-offset": end_offset,
        "--since": since,
        "--until": until,
    }
    if (input is None) == (from_topic is None):
        raise typer.BadParameter("give an INPUT file or --from-topic (one of them)")
    if from_topic is None and (used := [k for k, v in topic_only.items() if v]):
        raise typer.BadParameter(f"{', '.join(used)} need --from-topic")
    if start_offset is not None and since is not None:
        raise typer.BadParameter("--start-offset and --since exclude each other")
    if end_offset is not None and until is not None:
        raise typer.BadParameter("--end-offset and --until exclude each other")
    if from_topic is not None and shuffle:
        raise typer.BadParameter("--shuffle works on files only")
    options = ReplayOptions(
        rate=rate,
        feedback=feedback,
        feedback_delay_s=feedback_delay,
        shuffle=shuffle,
        seed=seed,
        limit=limit,
        wait=wait,
        answer_timeout_s=answer_timeout,
        on_bad_row=on_bad_row,
        progress=progress,
        keep_ids=keep_ids,
        to_topic=to_topic,
    )
    if from_topic is not None:
        selection = TopicRange(
            topic=from_topic,
            partitions=tuple(partition or ()),
            start_offset=start_offset,
            end_offset=end_offset,
            since=parse_moment(since),
            until=parse_moment(until),
        )
        _execute(
            lambda settings, stop: replay_topic(settings, selection, options, stop),
            waited=wait,
            feedback=feedback,
            report_json=report_json,
        )
        return
    assert input is not None
    with _input_path(input) as path:
        source = ReviewFile(
            path, input_format, text_column, label_column, require_label=True, name=_title(input)
        )
        _execute(
            lambda settings, stop: replay_file(settings, source, options, stop),
            waited=wait,
            feedback=feedback,
            report_json=report_json,
        )


def _execute(work: Work, *, waited: bool, feedback: bool, report_json: Path | None) -> None:
    """Read the settings once, run the work under signal handling, print the summary, exit."""
    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    _configure_logging(settings.log_level)
    try:
        with logging_redirect_tqdm():
            report = asyncio.run(_supervised(work, settings))
    except ProducerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KafkaError as exc:
        typer.echo(f"error: Kafka failed: {describe(exc)}", err=True)
        raise typer.Exit(2) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        typer.echo("aborted: stopped without flushing (second Ctrl-C)", err=True)
        raise typer.Exit(130) from None
    typer.echo(report.render(waited=waited, feedback=feedback), err=True)
    if report_json is not None:
        report_json.write_text(report.to_json() + "\n")
    if report.interrupted:
        typer.echo(
            "interrupted: everything sent was flushed; a re-run resumes"
            " (bulk with --output skips rows already answered)",
            err=True,
        )
    raise typer.Exit(report.exit_code)


async def _supervised(work: Work, settings: Settings) -> Report:
    """The first SIGINT/SIGTERM asks the run to stop and flush; a second one aborts it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal(name: str) -> None:
        if stop.is_set():
            if task is not None:
                task.cancel()
            return
        log.warning("%s: stopping; flushing what was sent (again to abort)", name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        return await work(settings, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def _input_path(name: str) -> Iterator[Path]:
    """The input as a path: stdin is first copied to a temporary file (it is read twice: once
    to count and check the rows, once to send them; and its digest names the run)."""
    if name != "-":
        yield Path(name)
        return
    fd, spool = tempfile.mkstemp(prefix="reviewstream-stdin-")
    try:
        with os.fdopen(fd, "wb") as stream:
            shutil.copyfileobj(sys.stdin.buffer, stream)
        yield Path(spool)
    finally:
        Path(spool).unlink(missing_ok=True)


def _title(name: str) -> str:
    return "<stdin>" if name == "-" else name


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if logging.getLogger().level > logging.DEBUG:
        # aiokafka logs every failed connection attempt; our own errors say what matters.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
