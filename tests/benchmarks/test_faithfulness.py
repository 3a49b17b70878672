"""The deletion test: spans removed where they stand, top words vs random, files written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.explain_latency import explain_ms
from benchmarks.faithfulness import app, measure_review, remove_spans, summarise, top_spans
from contracts import ExplainMethod, Explanation, WordWeight
from contracts.reviewfiles import SAMPLE
from inference import OnnxPredictor, explainer_for, load_bundle
from inference.synthetic import make_fast_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faithfulness") / "bundle"
    make_fast_bundle(path, seed=3)
    return path


def test_spans_are_removed_and_the_rest_kept() -> None:
    text = "The soup was not good, sadly."
    assert remove_spans(text, [(13, 16), (0, 4)]) == "soup was  good, sadly."
    assert remove_spans(text, []) == text
    words = [WordWeight(word=w, start=s, end=s + len(w), weight=x)
             for w, s, x in [("soup", 4, 0.5), ("not", 13, -2.0), ("good", 17, 1.0)]]  # fmt: skip
    explanation = Explanation(method=ExplainMethod.OCCLUSION, base=0, logit=0, words=words)
    assert top_spans(explanation, True, 2) == [(17, 21), (4, 8)]
    assert top_spans(explanation, False, 1) == [(13, 16)]


def test_top_words_move_the_answer_more_than_random_ones(bundle_dir: Path) -> None:
    predictor = OnnxPredictor(load_bundle(bundle_dir))
    explainer = explainer_for(predictor)
    rng = np.random.default_rng(0)
    texts = [f"word{i} " * 2 + " ".join(f"w{i * 7 + j}" for j in range(12)) for i in range(40)]
    results = [measure_review(predictor, explainer, t, rng) for t in texts]
    assert measure_review(predictor, explainer, "too short", rng) is None
    summary = summarise([r for r in results if r is not None])
    assert summary["reviews"] == 40
    for row in summary["per_k"]:
        # NgramSum weights are exact shares of the logit: deleting the top ones must hurt most.
        assert row["top_drop"] > row["random_drop"]
    drops = [row["top_drop"] for row in summary["per_k"]]
    assert drops[-1] > drops[0]
    assert summary["explain_ms_p95"] >= summary["explain_ms_p50"] > 0


def test_the_command_writes_json_and_a_png(bundle_dir: Path, tmp_path: Path) -> None:
    args = ["--bundle", str(bundle_dir), "--reviews", str(SAMPLE / "test.csv.gz"),
            "--count", "20", "--output", str(tmp_path)]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "top-k drop" in done.output
    assert "explain latency per review: p50" in done.output
    (saved,) = tmp_path.glob("faithfulness-fast-*.json")
    document = json.loads(saved.read_text())
    assert document["settings"]["count"] == 20
    assert [row["k"] for row in document["per_k"]] == [1, 2, 3, 4, 5]
    assert document["reviews"] + document["skipped_short"] == 20
    assert saved.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_explain_latency_is_one_time_per_review(bundle_dir: Path) -> None:
    ms = explain_ms(load_bundle(bundle_dir), ["Great food.", "", "Not good at all, sadly."])
    assert len(ms) == 3
    assert all(0 < x < 1000 for x in ms)
