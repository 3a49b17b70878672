"""``python -m benchmarks`` (``make bench``): every scenario of the benchmark in one run.

    .venv/bin/python -m benchmarks                 # the full run (3-4 minutes on 2 cores)
    .venv/bin/python -m benchmarks --quick         # a smoke run in a minute or two
    .venv/bin/python -m benchmarks --scenarios limit,streaming --bundle path/to/bundle

Starts its own Kafka, PostgreSQL and MLflow on free ports, registers the model, starts the
workers, the gateway, the registry watcher and ``mlflow models serve``, prints a table (median,
min and max of the repeats) and saves it as JSON with a description of the machine.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.data import DEFAULT_REVIEWS
from benchmarks.run import ARTIFACTS, SCENARIOS, Options, Run

app = typer.Typer(add_completion=False)


def _ints(value: str) -> list[int]:
    try:
        levels = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not levels or min(levels) < 1:
        raise typer.BadParameter("concurrency levels must be positive integers")
    return levels


def _scenarios(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise typer.BadParameter(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    return names


@app.command()
def main(
    quick: Annotated[
        bool, typer.Option(help="smoke run: 1 repeat, small counts, concurrency 1 and 16")
    ] = False,
    scenarios: Annotated[
        str | None,
        typer.Option(help=f"comma-separated subset of: {','.join(SCENARIOS)} (default: all)"),
    ] = None,
    repeats: Annotated[
        int | None, typer.Option(min=1, help="repeats per measurement (default 3, quick 1)")
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option(min=1, help="requests per online run and level (default 400, quick 64)"),
    ] = None,
    settle_requests: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="uncounted requests per online transport first, and a tenth as many one at "
            "a time (default 5000, quick 64)",
        ),
    ] = None,
    burst: Annotated[
        int | None, typer.Option(min=1, help="reviews per Kafka burst (default 20000, quick 2000)")
    ] = None,
    concurrency: Annotated[
        str | None, typer.Option(help="online concurrency levels (default 1,16,64; quick 1,16)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="JSON file (default .artifacts/bench/bench-<time>.json)")
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(help="a trained bundle folder (default: make_fast_bundle, 2**18 buckets)"),
    ] = None,
    reviews: Annotated[Path, typer.Option(help="gzip CSV with a text column")] = DEFAULT_REVIEWS,
    watcher_poll_s: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="the registry watcher's poll interval (hot reload; default: its own)"
        ),
    ] = None,
    profile_workers: Annotated[
        Path | None,
        typer.Option(help="run the workers under cProfile, writing DIR/worker-N.prof on exit"),
    ] = None,
    explain_reviews: Annotated[
        int | None, typer.Option(min=1, help="reviews explained, fast (default 200, quick 40)")
    ] = None,
    explain_reviews_accurate: Annotated[
        int | None,
        typer.Option(min=1, help="reviews explained, accurate (default 5, quick 2)"),
    ] = None,
    accurate_bundle: Annotated[
        Path | None,
        typer.Option(help="a trained accurate bundle to explain (default: MiniLM, random head)"),
    ] = None,
    stats_records: Annotated[
        int | None,
        typer.Option(
            min=100, help="predictions through the stats path (default 50000, quick 2000)"
        ),
    ] = None,
    stats_processors: Annotated[
        str | None,
        typer.Option(help="stats processors in one group, per run (default 1,2; quick 1)"),
    ] = None,
    stats_feedback_every: Annotated[
        int | None,
        typer.Option(min=0, help="feedback for every N-th of them (default 10; 0: none)"),
    ] = None,
    soak_minutes: Annotated[
        float | None,
        typer.Option(min=0.05, help="minutes of the soak (default 10, quick 0.25)"),
    ] = None,
    soak_rate: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="requests/s of the soak, REST and Kafka together (default: half of each "
            "path's maximum with both pushed at once, measured first)",
        ),
    ] = None,
    kill_rate: Annotated[
        float | None,
        typer.Option(min=1, help="broker-kill: REST requests a second (default 40)"),
    ] = None,
    own_stack: Annotated[
        bool,
        typer.Option(
            help="start a stack on free ports; --no-own-stack uses RS_KAFKA_*, "
            "DATABASE_URL and MLFLOW_TRACKING_URI from the environment"
        ),
    ] = True,
) -> None:
    """Measure the limit, streaming, REST/WebSocket, mlflow serve, hot reload, memory and
    the explain latency, the stats path with and without the drift monitor, and REST latency
    while one of three brokers is killed (not in --quick unless named in --scenarios)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    overrides = {
        "scenarios": _scenarios(scenarios) if scenarios else None,
        "repeats": repeats,
        "requests": requests,
        "settle_requests": settle_requests,
        "burst": burst,
        "concurrency": _ints(concurrency) if concurrency else None,
        "bundle": bundle,
        "reviews": reviews,
        "watcher_poll_s": watcher_poll_s,
        "explain_reviews": explain_reviews,
        "explain_reviews_accurate": explain_reviews_accurate,
        "accurate_bundle": accurate_bundle,
        "stats_records": stats_records,
        "stats_processors": _ints(stats_processors) if stats_processors else None,
        "stats_feedback_every": stats_feedback_every,
        "soak_minutes": soak_minutes,
        "soak_rate": soak_rate,
        "kill_rate": kill_rate,
        "own_stack": own_stack,
        "profile_workers": profile_workers,
    }
    options = Options.quick_mode(**overrides) if quick else Options().replace(**overrides)
    run = Run(options, echo=lambda line: typer.echo(line, err=True))
    try:
        report = asyncio.run(run.run())
    except BaseException:
        typer.echo(f"the services' logs and the stack's state are kept in {run.work}", err=True)
        raise
    shutil.rmtree(run.work, ignore_errors=True)  # a stack's state: ~60 MB a run
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = output or ARTIFACTS / f"bench-{stamp}{'-quick' if quick else ''}.json"
    report.save(path, run.settings())
    typer.echo(report.table())
    typer.echo(f"saved {path}")


if __name__ == "__main__":
    app()
