"""Rebuild this folder's sample: ``python data/sample/make_sample.py [SHARED_YELP_DIR]``.

A seeded random subset of rows, copied verbatim (header ``text,label,stars,source``), gzip.
"""

from __future__ import annotations

import csv
import gzip
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent.parent / "shared" / "data" / "yelp"
SIZES = {"train": 1200, "test": 300}
SEED = 20261126


def main(shared: Path = SHARED) -> None:
    for name, size in SIZES.items():
        with gzip.open(shared / f"{name}.csv.gz", "rt", encoding="utf-8", newline="") as f:
            header, *rows = list(csv.reader(f))
        chosen = sorted(random.Random(SEED).sample(range(len(rows)), size))  # noqa: S311
        with gzip.open(HERE / f"{name}.csv.gz", "wt", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows[i] for i in chosen)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED)
