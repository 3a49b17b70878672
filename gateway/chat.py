"""The WebSocket behind the chat page: classify and feedback in, predictions and stats out.

Authentication happens at the handshake (``Authorization``/``X-API-Key`` header, or the
subprotocol ``bearer.<key>`` next to ``reviewstream`` since browsers cannot set headers); a
refused handshake is a plain HTTP 401/403. Once open, viewers get the live statistics, and
clients may also classify (``ws_max_pending`` at a time) and send feedback.

Messages (JSON text frames), each answer echoing the client's ``id``::

    -> {"type": "classify", "id": "c1", "text": "...", "label": 1 | 0 | null,
        "idempotency_key": "..." (optional: a retry with the same key gets the same answer)}
    <- {"type": "accepted", "id": "c1", "request_id": "..."}        published, awaiting reply
    <- {"type": "prediction", "id": "c1", "request_id": "...", "verdict": ..., ...}
    -> {"type": "explain", "id": "e1", "text": "..."}
    <- {"type": "explanation", "id": "e1", "request_id": "...", "verdict": ..., ...,
        "explanation": {"method", "base", "logit", "words": [{"word", "start", "end", "weight"}]}}
    -> {"type": "feedback", "id": "f1", "request_id": "...", "label": 0 | 1}
    <- {"type": "feedback_ack", "id": "f1", "feedback_id": "...", "request_id": "..."}
    -> {"type": "ping", "id": "p1"}                     <- {"type": "pong", "id": "p1"}
    <- {"type": "stats", "stats": {...}}                 whenever the numbers change
    <- {"type": "model", "state": "none" | "deployed" | "unknown", "model_name", "version"}
       at once, then whenever it changes (with none, classify answers 503 no_model at once)
    <- {"type": "alerts", "alerts": [...]}  the recent alerts at once (GET /v1/alerts' list)
    <- {"type": "alert", "name", "status": "firing" | "resolved", "severity", "summary", ...}
       each new alert, or a change of status, as it comes from the alerts topic
    <- {"type": "error", "id": ..., "status": 504, "error": "reply_timeout", "message": ...}
       (422 rejected_by_worker / 502 inference_failed at once when a worker refuses the review)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter
from starlette.websockets import WebSocket, WebSocketDisconnect

from contracts import Source
from gateway.auth import (
    WS_SUBPROTOCOL,
    Principal,
    Role,
    key_from_headers,
    key_from_subprotocols,
)
from gateway.classifier import Idempotency
from gateway.context import Context
from gateway.decoding import parse_json
from gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    Overloaded,
    Unauthorized,
    http_response,
    ws_message,
)
from gateway.schemas import (
    AlertOut,
    ExplainedOut,
    ExplainIn,
    FeedbackIn,
    ModelOut,
    PredictionOut,
    ReviewIn,
    WsClassify,
    WsExplain,
    WsFeedback,
    WsIncoming,
    WsPing,
    dump,
)

log = logging.getLogger(__name__)

INCOMING: TypeAdapter[WsClassify | WsExplain | WsFeedback | WsPing] = TypeAdapter(WsIncoming)


def chat_endpoint(rt: Context) -> Callable[[WebSocket], Awaitable[None]]:
    async def chat(websocket: WebSocket) -> None:
        try:
            principal = _authenticate(websocket, rt)
            key = principal.key_sha256
            cap = rt.settings.ws_max_per_key
            if key is not None and rt.sockets_by_key[key] >= cap:
                raise Overloaded(
                    f"key {principal.name!r} already has {cap} open WebSockets; close one",
                    retry_after=rt.settings.retry_after_s,
                )
        except GatewayError as exc:
            await _deny(websocket, exc)
            return
        offered = websocket.scope.get("subprotocols", [])
        await websocket.accept(subprotocol=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
        if key is not None:
            rt.sockets_by_key[key] += 1
        try:
            await ChatSession(websocket, principal, rt).run()
        finally:
            if key is not None:
                rt.sockets_by_key[key] -= 1
                if not rt.sockets_by_key[key]:
                    del rt.sockets_by_key[key]

    return chat


def _authenticate(websocket: WebSocket, rt: Context) -> Principal:
    key = key_from_headers(websocket.headers)
    if key is None:
        key = key_from_subprotocols(websocket.scope.get("subprotocols", []))
    principal = rt.keyring.authenticate(key)
    rt.keyring.authorize(principal, Role.VIEWER)
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host", "")
    if origin and not _same_origin(origin, host) and origin not in rt.settings.allowed_origins:
        raise Forbidden(f"WebSocket connections from origin {origin!r} are not allowed")
    return principal


def _same_origin(origin: str, host: str) -> bool:
    return urlsplit(origin).netloc.lower() == host.lower()


async def _deny(websocket: WebSocket, exc: GatewayError) -> None:
    try:
        await websocket.send_denial_response(http_response(exc))
    except RuntimeError:  # the server lacks the denial extension: refuse with a close code
        await websocket.close(code=1008, reason=exc.message[:120])


class ChatSession:
    def __init__(self, websocket: WebSocket, principal: Principal, rt: Context) -> None:
        self._ws = websocket
        self._principal = principal
        self._rt = rt
        self._send_lock = asyncio.Lock()
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        rt = self._rt
        rt.websockets += 1
        rt.metrics.websockets.set(rt.websockets)
        try:
            s = rt.settings
            await self._send(
                {
                    "type": "hello",
                    "name": self._principal.name,
                    "role": self._principal.role.label,
                    "open_mode": s.open_mode,
                    "instance_id": s.instance_id,
                    "max_text_chars": s.max_text_chars,
                    "reply_timeout_s": s.reply_timeout_s,
                    "idle_timeout_s": s.ws_idle_timeout_s,
                }
            )
            self._spawn(self._push_stats())
            self._spawn(self._push_model())
            self._spawn(self._push_alerts())
            self._spawn(self._close_when_revoked())
            await self._receive()
        finally:
            # The socket is gone: cancel what still runs for it. The tasks clean up (free
            # their reply slots) on their own; nothing awaits them, so the endpoint returns
            # at once.
            for task in self._tasks:
                task.cancel()
            rt.websockets -= 1
            rt.metrics.websockets.set(rt.websockets)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive(self) -> None:
        idle_s = self._rt.settings.ws_idle_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(self._ws.receive(), timeout=idle_s)
            except TimeoutError:  # a socket that says nothing holds a slot for nothing
                with contextlib.suppress(RuntimeError, OSError):
                    await self._ws.close(code=1000, reason=f"idle for {idle_s:g} s")
                return
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self._error(BadRequest("send JSON text frames", code="invalid_message"), None)
                continue
            await self._dispatch(text)

    async def _dispatch(self, text: str) -> None:
        try:
            if len(text.encode()) > self._rt.settings.max_body_bytes:
                raise BadRequest(
                    f"the message is larger than {self._rt.settings.max_body_bytes} bytes",
                    status=413,
                    code="body_too_large",
                )
            incoming = parse_json(
                text, INCOMING.validate_json, limits=self._rt.limits, code="invalid_message"
            )
        except GatewayError as exc:
            await self._error(exc, _message_id(text))
            return
        if isinstance(incoming, WsPing):
            await self._send({"type": "pong", "id": incoming.id})
            return
        try:
            if not self._rt.keyring.holds(self._principal):
                raise Unauthorized("the API key was revoked or changed; reconnect")
            self._rt.keyring.authorize(self._principal, Role.CLIENT)
            self._rt.rates.take(self._principal)
        except GatewayError as exc:
            await self._error(exc, incoming.id)
            return
        # Every message that starts work holds a slot until it is answered: a client cannot
        # pile up tasks on the gateway faster than they end.
        limit = self._rt.settings.ws_max_pending
        if self._pending >= limit:
            busy = Overloaded(
                f"{limit} messages from this connection already await a reply; wait for one",
                retry_after=self._rt.settings.retry_after_s,
            )
            await self._error(busy, incoming.id)
            return
        self._pending += 1
        if isinstance(incoming, WsFeedback):
            self._spawn(self._feedback(incoming))
        elif isinstance(incoming, WsExplain):
            self._spawn(self._explain(incoming))
        else:
            self._spawn(self._classify(incoming))

    async def _classify(self, message: WsClassify) -> None:
        try:
            review = ReviewIn.model_construct(text=message.text, label=message.label)
            key = message.idempotency_key
            idempotency = None if key is None else Idempotency(self._principal.name, key)
            ticket = await self._rt.classifier.submit(
                [review], Source.WS, idempotency, owner=self._principal.key_sha256
            )
            try:
                await self._send(
                    {"type": "accepted", "id": message.id, "request_id": ticket.request_ids[0]}
                )
                [prediction] = await ticket.wait()
            finally:
                ticket.release()
            out = dump(PredictionOut.of(prediction))
            await self._send({"type": "prediction", "id": message.id, **out})
        except GatewayError as exc:
            await self._error(exc, message.id)
        finally:
            self._pending -= 1

    async def _explain(self, message: WsExplain) -> None:
        try:
            review = ExplainIn.model_construct(text=message.text)
            prediction, explanation = await self._rt.classifier.explain(
                review, Source.WS, owner=self._principal.key_sha256
            )
            out = dump(ExplainedOut.explained(prediction, explanation))
            await self._send({"type": "explanation", "id": message.id, **out})
        except GatewayError as exc:
            await self._error(exc, message.id)
        finally:
            self._pending -= 1

    async def _feedback(self, message: WsFeedback) -> None:
        try:
            given = FeedbackIn.model_construct(
                request_id=message.request_id, text=None, label=message.label
            )
            sent = await self._rt.classifier.feedback(given, Source.WS)
            await self._send(
                {
                    "type": "feedback_ack",
                    "id": message.id,
                    "feedback_id": sent.feedback_id,
                    "request_id": sent.request_id,
                    "label": sent.label,
                }
            )
        except GatewayError as exc:
            await self._error(exc, message.id)
        finally:
            self._pending -= 1

    async def _close_when_revoked(self) -> None:
        """A key revoked (or its role changed) in the key file ends its open sessions."""
        keyring = self._rt.keyring
        while keyring.holds(self._principal):
            await keyring.changed()
        with contextlib.suppress(RuntimeError, OSError):  # already closing
            await self._ws.close(code=1008, reason="the API key was revoked or changed")

    async def _push_stats(self) -> None:
        async for snapshot in self._rt.feed.subscribe():
            if not await self._send({"type": "stats", "stats": dump(snapshot)}):
                return

    async def _push_model(self) -> None:
        async for deployment in self._rt.models.changes():
            if not await self._send({"type": "model", **dump(ModelOut.of(deployment))}):
                return

    async def _push_alerts(self) -> None:
        board = self._rt.alerts.board
        with board.follow() as news:  # before the list: nothing falls between the two
            recent = [dump(AlertOut.of(a)) for a in board.recent()]
            if not await self._send({"type": "alerts", "alerts": recent}):
                return
            while True:
                alert = await news.get()
                if not await self._send({"type": "alert", **dump(AlertOut.of(alert))}):
                    return

    async def _error(self, exc: GatewayError, message_id: str | None) -> None:
        await self._send(ws_message(exc, message_id))

    async def _send(self, payload: dict[str, Any]) -> bool:
        """False once the socket is gone; the receive loop then ends the session."""
        async with self._send_lock:
            try:
                await self._ws.send_text(json.dumps(payload))
            except (WebSocketDisconnect, RuntimeError, OSError):
                return False
        return True


def _message_id(text: str) -> str | None:
    """The client's id from a message that failed validation, when it has a usable one."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # deep nesting exhausts the parser's stack
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and len(value) <= 64 else None
