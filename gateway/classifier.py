"""The gateway's core, shared by REST and WebSocket: submit reviews, await their predictions.

``submit`` reserves room for the replies (bounded), publishes the requests and returns a
:class:`Ticket`; ``Ticket.wait`` returns the predictions in request order or raises
ReplyTimeout. The transports only translate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts import Feedback, Prediction, ReviewRequest, Source
from gateway.bus import RequestBus
from gateway.errors import ReplyTimeout
from gateway.metrics import Metrics
from gateway.replies import Replies
from gateway.schemas import FeedbackIn, ReviewIn

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    requests: list[ReviewRequest]
    _futures: list[asyncio.Future[Prediction]]
    _classifier: Classifier
    _started: float = field(default_factory=time.perf_counter)

    @property
    def request_ids(self) -> list[str]:
        return [r.request_id for r in self.requests]

    def release(self) -> None:
        """Stop waiting (idempotent): a reply that comes later is counted as late."""
        self._classifier.replies.release(self.request_ids)
        self._classifier.metrics.in_flight.set(self._classifier.replies.in_flight)

    async def wait(self) -> list[Prediction]:
        c = self._classifier
        transport = self.requests[0].source.value
        try:
            async with asyncio.timeout(c.reply_timeout_s):
                predictions = await asyncio.gather(*(asyncio.shield(f) for f in self._futures))
        except TimeoutError:
            missing = [r.request_id for r, f in zip(self.requests, self._futures, strict=True)
                       if not f.done()]  # fmt: skip
            c.metrics.reviews.labels(transport, "timeout").inc(len(missing))
            log.warning("no reply within %g s for %s", c.reply_timeout_s, ", ".join(missing))
            what = "the review" if len(self.requests) == 1 else (
                f"{len(missing)} of {len(self.requests)} reviews"
            )  # fmt: skip
            raise ReplyTimeout(
                f"no prediction for {what} within {c.reply_timeout_s:g} s; the review was "
                "queued, but no worker answered in time (are the workers running?)",
                details=[{"field": "request_id", "problem": f"no reply for {m}"} for m in missing],
            ) from None
        finally:
            self.release()
        elapsed = time.perf_counter() - self._started
        c.metrics.classify_seconds.labels(transport).observe(elapsed)
        c.metrics.reviews.labels(transport, "ok").inc(len(predictions))
        return list(predictions)


class Classifier:
    def __init__(
        self,
        bus: RequestBus,
        replies: Replies,
        metrics: Metrics,
        *,
        instance_id: str,
        reply_timeout_s: float,
    ) -> None:
        self.bus = bus
        self.replies = replies
        self.metrics = metrics
        self.instance_id = instance_id
        self.reply_timeout_s = reply_timeout_s

    async def submit(self, reviews: Sequence[ReviewIn], source: Source) -> Ticket:
        """Published and awaited, or an error: Overloaded, KafkaUnavailable."""
        requests = [
            ReviewRequest(
                text=review.text, source=source, user_label=review.label, reply_to=self.instance_id
            )
            for review in reviews
        ]
        ids = [r.request_id for r in requests]
        try:
            futures = self.replies.reserve(ids)
        except Exception:
            self.metrics.reviews.labels(source.value, "overloaded").inc(len(requests))
            raise
        self.metrics.in_flight.set(self.replies.in_flight)
        try:
            await self.bus.publish_requests(requests)
        except BaseException:
            self.replies.release(ids)
            self.metrics.in_flight.set(self.replies.in_flight)
            self.metrics.reviews.labels(source.value, "unpublished").inc(len(requests))
            raise
        return Ticket(requests, futures, self)

    async def classify(self, reviews: Sequence[ReviewIn], source: Source) -> list[Prediction]:
        ticket = await self.submit(reviews, source)
        return await ticket.wait()

    async def feedback(self, given: FeedbackIn, source: Source) -> Feedback:
        feedback = Feedback(
            request_id=given.request_id, text=given.text, label=given.label, source=source
        )
        await self.bus.publish_feedback(feedback)
        self.metrics.feedback.labels(source.value).inc()
        return feedback
