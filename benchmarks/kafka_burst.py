"""Scenarios 1 and 2 alone: the in-process limit, then Kafka bursts through 1 and 2 workers.

    .venv/bin/python -m benchmarks.kafka_burst [--burst 20000] [--repeats 3] [--bundle DIR]

A thin entry point to ``python -m benchmarks --scenarios limit,streaming``: same stack, same
reviews, same table and JSON.
"""

from __future__ import annotations

import sys

from benchmarks.__main__ import app


def main() -> None:
    app(["--scenarios", "limit,streaming", *sys.argv[1:]])


if __name__ == "__main__":
    main()
