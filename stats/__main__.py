"""``python -m stats``: the statistics stream processor, until SIGTERM or SIGINT."""

from __future__ import annotations

from runtime.process import serve
from stats.service import StatsService
from stats.settings import Settings

if __name__ == "__main__":
    serve(
        lambda: StatsService(Settings()),
        name="stats",
        # faust and mode narrate every start, stop and group join at INFO: keep their warnings.
        quiet=("faust", "mode", "aiokafka"),
        use_uvloop=False,  # faust runs on the plain asyncio loop
    )
