"""``python -m gateway``: the REST API, the chat UI and its WebSocket, on RS_GATEWAY_PORT."""

from __future__ import annotations

import logging

import uvloop

from gateway.service import Gateway
from gateway.settings import Settings
from runtime.startup import quiet_probes


async def main(settings: Settings) -> None:
    async with Gateway(settings) as gateway:
        await gateway.run()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    quiet_probes()  # no aiokafka errors while Kafka is awaited at start-up
    uvloop.run(main(Settings()))
