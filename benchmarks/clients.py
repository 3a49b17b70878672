"""The single-review clients the load generator drives: the gateway's REST classify (and its
``/healthz``, the HTTP alone), the gateway's WebSocket, ``mlflow models serve``'s /invocations
(one aiohttp session each), and a producer straight to the requests topic that waits for the
prediction (as a producer service publishes, with a reader matching the answers by key)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from benchmarks.load import Send
from benchmarks.streaming import reader_at_end
from contracts import KafkaSettings, ReviewRequest, Source, encode


class RequestFailed(Exception):
    """An answer that is not a prediction (an HTTP error status, a WebSocket error message)."""


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
    )


@asynccontextmanager
async def rest_client(base_url: str) -> AsyncIterator[Send]:
    """POST /v1/classify; the answer is the PredictionOut as a dict."""
    async with _session() as http:

        async def send(text: str) -> Any:
            async with http.post(f"{base_url}/v1/classify", json={"text": text}) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise RequestFailed(f"{response.status}: {body}")
                return body

        yield send


@asynccontextmanager
async def healthz_client(base_url: str) -> AsyncIterator[Send]:
    """GET /healthz, whatever the text: the gateway's HTTP alone (no Kafka, no model)."""
    async with _session() as http:

        async def send(text: str) -> Any:
            async with http.get(f"{base_url}/healthz") as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise RequestFailed(f"{response.status}: {body}")
                return body

        yield send


@asynccontextmanager
async def mlflow_client(base_url: str) -> AsyncIterator[Send]:
    """POST /invocations with one text in the dataframe_split format."""
    async with _session() as http:

        async def send(text: str) -> Any:
            payload = {"dataframe_split": {"columns": ["text"], "data": [[text]]}}
            async with http.post(f"{base_url}/invocations", json=payload) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise RequestFailed(f"{response.status}: {body}")
                return body

        yield send


@asynccontextmanager
async def websocket_client(base_url: str, sockets: int) -> AsyncIterator[Send]:
    """``sockets`` WebSockets to /v1/ws, each with one classification in flight at a time (a
    closed-loop client per socket); the answer is the prediction message."""
    ids = itertools.count()
    url = base_url.replace("http", "ws", 1) + "/v1/ws"
    async with _session() as http:
        pool: asyncio.Queue[aiohttp.ClientWebSocketResponse] = asyncio.Queue()
        opened = [await http.ws_connect(url, protocols=["reviewstream"]) for _ in range(sockets)]
        for ws in opened:
            pool.put_nowait(ws)

        async def send(text: str) -> Any:
            ws = await pool.get()
            try:
                mid = f"b{next(ids)}"
                await ws.send_json({"type": "classify", "id": mid, "text": text})
                while True:
                    message = await ws.receive()
                    if message.type != aiohttp.WSMsgType.TEXT:
                        raise RequestFailed(f"the socket closed: {message.type.name}")
                    data = message.json()
                    if data.get("id") != mid:
                        continue  # hello, stats pushes
                    if data["type"] == "prediction":
                        return data
                    if data["type"] == "error":
                        raise RequestFailed(f"{data.get('status')}: {data.get('message')}")
            finally:
                pool.put_nowait(ws)

        try:
            yield send
        finally:
            for ws in opened:
                await ws.close()


@asynccontextmanager
async def kafka_client(kafka: KafkaSettings) -> AsyncIterator[Send]:
    """A ReviewRequest produced to the requests topic; the answer is the prediction's record
    value (not decoded: the reader costs as little CPU as it can)."""
    producer = AIOKafkaProducer(**kafka.client(), acks="all", linger_ms=5)
    reader, _ = await asyncio.gather(reader_at_end(kafka), producer.start())
    waiting: dict[bytes, asyncio.Future[bytes | None]] = {}

    async def read() -> None:
        while True:
            for messages in (await reader.getmany(timeout_ms=200)).values():
                for message in messages:
                    answer = waiting.pop(message.key, None) if message.key else None
                    if answer is not None and not answer.done():
                        answer.set_result(message.value)

    async def send(text: str) -> Any:
        request = ReviewRequest(text=text, source=Source.PRODUCER)
        key = request.request_id.encode()
        answer = waiting[key] = asyncio.get_running_loop().create_future()
        try:
            await (await producer.send(kafka.requests_topic, encode(request), key=key))
            async with asyncio.timeout(60):
                return await answer
        finally:
            waiting.pop(key, None)

    reading = asyncio.create_task(read())
    try:
        yield send
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await asyncio.gather(reader.stop(), producer.stop())
