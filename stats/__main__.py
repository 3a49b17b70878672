"""``python -m stats``: the statistics stream processor, until SIGTERM or SIGINT."""

from __future__ import annotations

import gc

from runtime.process import serve
from stats.service import StatsService
from stats.settings import Settings

# The garbage collector, tuned for a loop that makes and drops thousands of small objects a
# batch (issue #20: ~30% of the processor's CPU per record): what the imports made (faust,
# pydantic's schemas, numpy...) lives as long as the process, so full collections leave it
# out (freeze), and young collections run every 10,000 allocations rather than every 700, so
# fewer of a batch's short-lived objects get promoted and traversed again.
GC_THRESHOLDS = (10_000, 50, 100)

if __name__ == "__main__":
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    serve(
        lambda: StatsService(Settings()),
        name="stats",
        # faust and mode narrate every start, stop and group join at INFO: keep their warnings.
        quiet=("faust", "mode", "aiokafka"),
        use_uvloop=False,  # faust runs on the plain asyncio loop
    )
