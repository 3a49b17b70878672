"""Do the explanations point at the words that decide? And what does explaining cost?

    .venv/bin/python -m benchmarks.faithfulness --bundle PATH [--reviews FILE] [--count 300]

For each review: the predicted class; delete the k words with the most weight towards that
class (k = 1..5), or k of its explained words drawn at random, from the text, and predict
again. Faithful weights make the predicted class's probability fall further for their top
words than for random ones (the deletion test, "comprehensiveness" in DeYoung et al. 2020,
ERASER). Deleting leaves the rest of the text as it was, so the fast model sees new bigrams
across a gap; that is part of what is measured. Reviews with fewer explained words than the
largest k are left out (and counted). The explain latency is the time of one ``explain`` per
review, on the workers' ONNX Runtime settings (1 thread).

Writes ``faithfulness-<family>-<time>.json`` and ``.png`` to ``.artifacts/bench/`` and prints
a table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmarks.data import DEFAULT_REVIEWS, load_reviews
from benchmarks.report import machine
from contracts import Explanation
from inference import Explainer, OnnxPredictor, explainer_for, load_bundle

KS = (1, 2, 3, 4, 5)
# benchmarks.run's folder; not imported from there, which loads MLflow's pyfunc.
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "bench"


@dataclass(frozen=True)
class ReviewResult:
    positive: bool  # the predicted class
    probability: float  # of the predicted class, on the whole review
    top_drops: list[float]  # per k: its fall when the top-k words are deleted
    random_drops: list[float]  # per k: the same for random words (mean over the draws)
    top_flips: list[bool]  # per k: the predicted class changed
    random_flips: list[float]  # per k: share of the draws that changed it
    explain_ms: float


def remove_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the characters of ``spans`` (non-overlapping; any order)."""
    kept, at = [], 0
    for start, end in sorted(spans):
        kept.append(text[at:start])
        at = end
    kept.append(text[at:])
    return "".join(kept)


def top_spans(explanation: Explanation, positive: bool, k: int) -> list[tuple[int, int]]:
    """The spans of the ``k`` words that push most towards the predicted class."""
    sign = 1.0 if positive else -1.0
    order = sorted(explanation.words, key=lambda w: -sign * w.weight)
    return [(w.start, w.end) for w in order[:k]]


def measure_review(
    predictor: OnnxPredictor,
    explainer: Explainer,
    text: str,
    rng: np.random.Generator,
    *,
    ks: Sequence[int] = KS,
    draws: int = 3,
) -> ReviewResult | None:
    """One review's drops per k, or None when it has fewer explained words than max(ks)."""
    started = time.perf_counter()
    explanation = explainer.explain(text)
    explain_ms = (time.perf_counter() - started) * 1000
    words = explanation.words
    if len(words) < max(ks):
        return None
    p = float(predictor.predict([text])[0])
    positive = p >= 0.5
    variants = [remove_spans(text, top_spans(explanation, positive, k)) for k in ks]
    for k in ks:
        for _ in range(draws):
            chosen = rng.choice(len(words), k, replace=False)
            variants.append(remove_spans(text, [(words[i].start, words[i].end) for i in chosen]))
    after = predictor.predict(variants).astype(np.float64)
    towards = after if positive else 1.0 - after  # the predicted class's probability
    before = p if positive else 1.0 - p
    top = towards[: len(ks)]
    random = towards[len(ks) :].reshape(len(ks), draws)
    return ReviewResult(
        positive=positive,
        probability=before,
        top_drops=(before - top).tolist(),
        random_drops=(before - random).mean(axis=1).tolist(),
        top_flips=(top < 0.5).tolist(),
        random_flips=(random < 0.5).mean(axis=1).tolist(),
        explain_ms=explain_ms,
    )


def summarise(results: Sequence[ReviewResult], ks: Sequence[int] = KS) -> dict[str, Any]:
    def column(name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.asarray([getattr(r, name) for r in results], dtype=np.float64).reshape(
            len(results), len(ks)
        )

    top, random = column("top_drops"), column("random_drops")
    ms = np.asarray([r.explain_ms for r in results] or [np.nan])
    return {
        "reviews": len(results),
        "per_k": [
            {
                "k": k,
                "top_drop": float(top[:, i].mean()),
                "random_drop": float(random[:, i].mean()),
                "top_flip_rate": float(column("top_flips")[:, i].mean()),
                "random_flip_rate": float(column("random_flips")[:, i].mean()),
            }
            for i, k in enumerate(ks)
        ],
        "explain_ms_p50": float(np.percentile(ms, 50)),
        "explain_ms_p95": float(np.percentile(ms, 95)),
        "explain_ms_mean": float(ms.mean()),
    }


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"{'k':>2}  {'top-k drop':>10}  {'random drop':>11}  {'top-k flips':>11}  "
        f"{'random flips':>12}",
    ]
    for row in summary["per_k"]:
        lines.append(
            f"{row['k']:>2}  {row['top_drop']:>10.4f}  {row['random_drop']:>11.4f}  "
            f"{row['top_flip_rate']:>11.1%}  {row['random_flip_rate']:>12.1%}"
        )
    lines.append(
        f"explain latency per review: p50 {summary['explain_ms_p50']:.2f} ms, "
        f"p95 {summary['explain_ms_p95']:.2f} ms ({summary['reviews']} reviews)"
    )
    return "\n".join(lines)


def plot(summary: dict[str, Any], title: str, path: Path) -> Path:
    rows = summary["per_k"]
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ks = [r["k"] for r in rows]
    axes.plot(ks, [r["top_drop"] for r in rows], marker="o", label="top-k words by weight")
    axes.plot(ks, [r["random_drop"] for r in rows], marker="s", label="k random words")
    axes.set_xticks(ks)
    axes.set_xlabel("words deleted (k)")
    axes.set_ylabel("mean drop of the predicted class's probability")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def sample_reviews(path: Path, count: int, seed: int) -> list[str]:
    texts = [text for text, _ in load_reviews(path)]
    if count >= len(texts):
        return texts
    chosen = np.random.default_rng(seed).choice(len(texts), count, replace=False)
    return [texts[i] for i in sorted(chosen)]


def run(
    bundle_dir: Path, reviews: Path, count: int, seed: int, draws: int = 3
) -> tuple[dict[str, Any], str]:
    """The summary of ``count`` reviews and the bundle's family."""
    bundle = load_bundle(bundle_dir)
    predictor = OnnxPredictor(bundle)  # the workers' settings: 1 thread
    explainer = explainer_for(predictor)
    texts = sample_reviews(reviews, count, seed)
    explainer.explain(texts[0])  # warm-up: the first run allocates
    rng = np.random.default_rng(seed)
    results = [measure_review(predictor, explainer, t, rng, draws=draws) for t in texts]
    kept = [r for r in results if r is not None]
    summary = summarise(kept)
    summary["skipped_short"] = len(results) - len(kept)
    summary["predicted_positive"] = sum(r.positive for r in kept)
    return summary, bundle.family


app = typer.Typer(add_completion=False)


@app.command()
def main(
    bundle: Annotated[Path, typer.Option(help="a bundle folder (bundle.json, model.onnx)")],
    reviews: Annotated[Path, typer.Option(help="reviews with a text column")] = DEFAULT_REVIEWS,
    count: Annotated[int, typer.Option(min=1, help="reviews, a seeded sample")] = 300,
    seed: Annotated[int, typer.Option(help="the sample's and the random words' seed")] = 0,
    draws: Annotated[int, typer.Option(min=1, help="random draws per review and k")] = 3,
    output: Annotated[Path, typer.Option(help="folder for the JSON and the PNG")] = ARTIFACTS,
) -> None:
    """Deletion faithfulness (top-k vs random words, k = 1..5) and explain latency."""
    started = time.perf_counter()
    summary, family = run(bundle, reviews, count, seed, draws)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"faithfulness-{family}-{stamp}"
    document = {
        "created_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "settings": {
            "bundle": str(bundle),
            "family": family,
            "reviews": str(reviews),
            "count": count,
            "seed": seed,
            "draws": draws,
            "onnx_threads": 1,
        },
        "seconds": time.perf_counter() - started,
        **summary,
    }
    (output / f"{name}.json").parent.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(document, indent=1))
    title = f"Deletion test, {family} model, {summary['reviews']} reviews"
    plot(summary, title, output / f"{name}.png")
    typer.echo(f"{family} model, {bundle}: {count} reviews from {reviews}")
    typer.echo(table(summary))
    typer.echo(f"saved {output / name}.json and .png")


if __name__ == "__main__":
    app()
