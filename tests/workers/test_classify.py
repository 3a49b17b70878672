"""Classifying a batch: requests that ask ``explain`` are explained by the version that answered."""

from __future__ import annotations

from pathlib import Path

from contracts import ExplainMethod, FailureKind, RequestFeatures, ReviewRequest, Source, encode
from inference import OnnxPredictor, explainer_for
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
