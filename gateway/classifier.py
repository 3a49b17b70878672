"""The gateway's core, shared by REST and WebSocket: submit reviews, await their predictions.

``submit`` reserves room for the replies (bounded), publishes the requests and returns a
:class:`Ticket`; ``Ticket.wait`` returns the predictions in request order, or raises
WorkerRefused as soon as a worker answers one with an error, or ReplyTimeout. With an
:class:`Idempotency` key, a retry gets the first answer (remembered, or still awaited) and
publishes nothing new (see ``gateway.idempotency``). The transports only translate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from contracts import Explanation, Feedback, Prediction, ReviewRequest, Source
from contracts.messages import new_request_id
from gateway.bus import RequestBus
from gateway.deployment import ModelFeed
from gateway.errors import ModelNotDeployed, ReplyTimeout, StatsUnavailable, WorkerRefused
from gateway.idempotency import RememberedAnswers, fingerprint, request_id_for
from gateway.metrics import Metrics
from gateway.replies import Replies
from gateway.schemas import ExplainIn, FeedbackIn, ReviewIn

log = logging.getLogger(__name__)

StoredAnswer = Callable[[str, float], Awaitable[Prediction | None]]
"""``answer(request_id, within_s)``: a prediction the statistics already hold, or None."""


@dataclass(frozen=True)
class Idempotency:
    """A client's name for its request: who (the API key's name) and the key it chose."""

    caller: str
    key: str


@dataclass
class Ticket:
    requests: list[ReviewRequest]
    _futures: list[asyncio.Future[Prediction]]
    _reserved: list[str]
    """the ids this ticket holds a reply slot for (not those answered already)"""
    _classifier: Classifier
    _prints: list[str] | None = None
    _started: float = field(default_factory=time.perf_counter)

    @property
    def request_ids(self) -> list[str]:
        return [r.request_id for r in self.requests]

    def release(self) -> None:
        """Stop waiting (idempotent): a reply that comes later is counted as late."""
        reserved, self._reserved = self._reserved, []
        self._classifier.replies.release(reserved)
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
            self._forget()
            what = "the review" if len(self.requests) == 1 else (
                f"{len(missing)} of {len(self.requests)} reviews"
            )  # fmt: skip
            raise ReplyTimeout(
                f"no prediction for {what} within {c.reply_timeout_s:g} s; the review was "
                "queued, but no worker answered in time (are the workers running?)",
                details=[{"field": "request_id", "problem": f"no reply for {m}"} for m in missing],
            ) from None
        except WorkerRefused as exc:
            c.metrics.reviews.labels(transport, "refused").inc(len(self.requests))
            self._forget()
            if len(self.requests) > 1:
                raise exc.in_batch(self.request_ids.index(exc.request_id)) from None
            raise
        finally:
            self.release()
        elapsed = time.perf_counter() - self._started
        c.metrics.classify_seconds.labels(transport).observe(elapsed)
        c.metrics.reviews.labels(transport, "ok").inc(len(predictions))
        if self._prints is not None:
            for request_id, print_, p in zip(
                self.request_ids, self._prints, predictions, strict=True
            ):
                c.answers.remember(request_id, print_, p)
        return list(predictions)

    def _forget(self) -> None:
        if self._prints is not None:
            for request_id in self.request_ids:
                self._classifier.answers.forget(request_id)


class Classifier:
    def __init__(
        self,
        bus: RequestBus,
        replies: Replies,
        metrics: Metrics,
        *,
        instance_id: str,
        reply_timeout_s: float,
        answers: RememberedAnswers,
        no_model_retry_after_s: int,
        stored_answer: StoredAnswer | None = None,
        models: ModelFeed | None = None,
    ) -> None:
        self.bus = bus
        self.replies = replies
        self.metrics = metrics
        self.instance_id = instance_id
        self.reply_timeout_s = reply_timeout_s
        self.answers = answers  # sized by the settings (gateway.app): no defaults of its own
        self._stored_answer = stored_answer
        self.models = models
        self._no_model_retry_after_s = no_model_retry_after_s

    async def submit(
        self,
        reviews: Sequence[ReviewIn],
        source: Source,
        idempotency: Idempotency | None = None,
        *,
        owner: str | None,
        explain: bool = False,
    ) -> Ticket:
        """Published and awaited, or an error: ModelNotDeployed (at once), Overloaded (of all
        or of ``owner``'s reply slots), KafkaUnavailable, or (a key reused for another review)
        ValidationFailed. With ``explain``, each answer carries an Explanation (the
        statistics do not count it)."""
        if self.models is not None:
            try:
                self.models.current.require(retry_after_s=self._no_model_retry_after_s)
            except ModelNotDeployed:
                self.metrics.reviews.labels(source.value, "no_model").inc(len(reviews))
                raise
        prints: list[str] | None = None
        known: dict[int, Prediction] = {}
        if idempotency is None:
            ids = [new_request_id() for _ in reviews]
        else:
            caller, key = idempotency.caller, idempotency.key
            ids = [request_id_for(caller, key, i) for i in range(len(reviews))]
            prints = [fingerprint(r.text, r.label) for r in reviews]
            known = await self._known_answers(ids, prints)
        requests = [
            ReviewRequest(
                request_id=request_id,
                text=review.text,
                source=source,
                user_label=review.label,
                reply_to=self.instance_id,
                explain=explain,
            )
            for request_id, review in zip(ids, reviews, strict=True)
        ]
        waiting = [r.request_id for i, r in enumerate(requests) if i not in known]
        unpublished = [r for r in requests if r.request_id in waiting
                       and not self.replies.is_pending(r.request_id)]  # fmt: skip
        try:
            reserved = iter(self.replies.reserve(waiting, owner))
        except Exception:
            self.metrics.reviews.labels(source.value, "overloaded").inc(len(requests))
            raise
        self.metrics.in_flight.set(self.replies.in_flight)
        if prints is not None:  # a reuse of the key for another review is refused from now on
            for i in range(len(requests)):
                if i not in known:
                    self.answers.remember(ids[i], prints[i], None)
        try:
            if unpublished:
                await self.bus.publish_requests(unpublished)
        except BaseException:
            self.replies.release(waiting)
            self.metrics.in_flight.set(self.replies.in_flight)
            self.metrics.reviews.labels(source.value, "unpublished").inc(len(unpublished))
            raise
        futures = [_done(known[i]) if i in known else next(reserved) for i in range(len(requests))]
        return Ticket(requests, futures, waiting, self, prints)

    async def classify(
        self,
        reviews: Sequence[ReviewIn],
        source: Source,
        idempotency: Idempotency | None = None,
        *,
        owner: str | None,
    ) -> list[Prediction]:
        ticket = await self.submit(reviews, source, idempotency, owner=owner)
        return await ticket.wait()

    async def explain(
        self, review: ExplainIn, source: Source, *, owner: str | None
    ) -> tuple[Prediction, Explanation]:
        """The answer and the words that decided it. No idempotency key: asking again
        changes nothing."""
        ticket = await self.submit([ReviewIn.model_construct(text=review.text, label=None)],
                                   source, owner=owner, explain=True)  # fmt: skip
        [prediction] = await ticket.wait()
        if prediction.explanation is None:
            raise WorkerRefused(
                f"worker {prediction.worker_id} answered without an explanation",
                request_id=prediction.request_id,
                invalid=False,
            )
        return prediction, prediction.explanation

    async def feedback(self, given: FeedbackIn, source: Source) -> Feedback:
        feedback = Feedback(
            request_id=given.request_id, text=given.text, label=given.label, source=source
        )
        await self.bus.publish_feedback(feedback)
        self.metrics.feedback.labels(source.value).inc()
        return feedback

    async def _known_answers(self, ids: list[str], prints: list[str]) -> dict[int, Prediction]:
        """Answers to these ids given before: remembered here, else stored in the statistics
        (a retry that reached another replica). A key reused for another review is a 422."""
        known: dict[int, Prediction] = {}
        for i, (request_id, print_) in enumerate(zip(ids, prints, strict=True)):
            answer = self.answers.recall(request_id, print_)
            lookup = self._stored_answer
            if answer is None and lookup is not None and not self.replies.is_pending(request_id):
                try:
                    answer = await lookup(request_id, self.answers.ttl_s)
                except StatsUnavailable:
                    answer = None  # not known here: asking the workers again is safe
            if answer is not None:
                known[i] = answer
                self.answers.remember(request_id, print_, answer)
        return known


def _done(prediction: Prediction) -> asyncio.Future[Prediction]:
    future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
    future.set_result(prediction)
    return future
