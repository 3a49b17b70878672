"""Classifying a batch: requests that ask ``explain`` are explained by the version that
answered; a small batch is classified on the event loop, a larger one in a thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from contracts import ExplainMethod, FailureKind, RequestFeatures, ReviewRequest, Source, encode
from inference import Bundle, OnnxPredictor, explainer_for
from inference.synthetic import make_fast_bundle
from runtime.records import Record
from workers.batch import Accepted
from workers.classify import classify
from workers.metrics import WorkerMetrics
from workers.models import LoadedModel


def accepted(text: str, *, explain: bool, offset: int) -> Accepted:
    request = ReviewRequest(text=text, source=Source.REST, explain=explain)
    return Accepted(Record("requests", 0, offset, None, encode(request)), request)


async def test_only_the_requests_that_ask_are_explained(tmp_path: Path) -> None:
    predictor = OnnxPredictor(make_fast_bundle(tmp_path / "b"))
    model = LoadedModel("m", "7", "a" * 64, predictor, explainer=explainer_for(predictor))
    batch = [accepted("Tasty food.", explain=False, offset=0),
             accepted("Rude staff, cold soup.", explain=True, offset=1)]  # fmt: skip
    answers, failed = await classify(model, batch, WorkerMetrics())
    assert ([a.item for a in answers], failed) == (batch, [])
    expected = predictor.predict(["Tasty food.", "Rude staff, cold soup."])
    assert [a.probability for a in answers] == [float(p) for p in expected]
    # A synthetic bundle has no reference profile: lengths, but no unknown share.
    assert [a.features for a in answers] == [
        RequestFeatures(words=2), RequestFeatures(words=4)
    ]  # fmt: skip
    assert answers[0].explanation is None
    explanation = answers[1].explanation
    assert explanation is not None
    assert explanation.method is ExplainMethod.NGRAM_SUM
    assert [w.word for w in explanation.words] == ["Rude", "staff", "cold", "soup"]


async def test_a_version_that_cannot_explain_refuses_only_the_explain_requests(
    tmp_path: Path,
) -> None:
    predictor = OnnxPredictor(make_fast_bundle(tmp_path / "b"))
    model = LoadedModel("m", "7", "a" * 64, predictor)  # no explainer
    batch = [accepted("Tasty food.", explain=False, offset=0),
             accepted("Why?", explain=True, offset=1)]  # fmt: skip
    answers, failed = await classify(model, batch, WorkerMetrics())
    assert [a.item for a in answers] == batch[:1]
    (refused,) = failed
    assert refused.kind is FailureKind.INFERENCE
    assert refused.request == batch[1].request
    assert "version 7 has no explainer" in refused.reason


class ThreadsNoted(OnnxPredictor):
    """Notes the thread of every call; a batch holding "boom" fails, and so does "boom" alone."""

    def __init__(self, bundle: Bundle) -> None:
        super().__init__(bundle)
        self.threads: list[int] = []

    def predict_described(
        self, texts: list[str]
    ) -> tuple[NDArray[np.float32], list[RequestFeatures]]:
        self.threads.append(threading.get_ident())
        if "boom" in texts:
            raise RuntimeError("boom")
        return super().predict_described(texts)


@pytest.mark.parametrize(("inline_max", "on_the_loop"), [(0, False), (2, False), (3, True)])
async def test_a_batch_up_to_inline_max_is_classified_on_the_event_loop(
    tmp_path: Path, inline_max: int, on_the_loop: bool
) -> None:
    predictor = ThreadsNoted(make_fast_bundle(tmp_path / "b"))
    model = LoadedModel("m", "7", "a" * 64, predictor)
    texts = ["Tasty food.", "boom", "Cold soup."]
    batch = [accepted(text, explain=False, offset=i) for i, text in enumerate(texts)]
    answers, failed = await classify(model, batch, WorkerMetrics(), inline_max=inline_max)
    # The batch failed, then each request alone: the bad one is refused, the others answered.
    assert [a.item for a in answers] == [batch[0], batch[2]]
    assert [a.probability for a in answers] == [
        float(p) for p in predictor.predict([texts[0], texts[2]])
    ]
    assert [f.record for f in failed] == [batch[1].record]
    assert len(predictor.threads) == 4
    loop = threading.get_ident()
    assert [thread == loop for thread in predictor.threads] == [on_the_loop] * 4
