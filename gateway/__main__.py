"""``python -m gateway``: the REST API, the chat UI and its WebSocket, on RS_GATEWAY_PORT."""

from __future__ import annotations

from gateway.service import Gateway
from gateway.settings import Settings
from runtime.process import serve

if __name__ == "__main__":
    serve(lambda: Gateway(Settings()), name="gateway")
