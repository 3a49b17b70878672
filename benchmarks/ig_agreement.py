"""Does the accurate model's occlusion agree with Integrated Gradients?

    .venv/bin/python -m benchmarks.ig_agreement --bundle BUNDLE --weights model.pt [--count 30]

Occlusion (what the workers serve) is measured on the bundle's ONNX graph; Integrated Gradients
(Sundararajan et al. 2017, Captum's ``LayerIntegratedGradients`` on the word embeddings, from a
baseline that keeps [CLS] and [SEP] and pads every other piece) needs the torch model behind the
bundle: ``--weights`` is its ``state_dict`` saved with ``torch.save``. A word's IG attribution is
the sum over its pieces; agreement is Spearman's rank correlation of the two per review (also
the share of reviews whose top word is the same), averaged over reviews. IG's completeness gap
(|sum of attributions - (logit - baseline logit)|) says whether ``--steps`` is enough.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import torch
import typer
from numpy.typing import NDArray

from benchmarks.data import DEFAULT_REVIEWS
from benchmarks.faithfulness import ARTIFACTS, sample_reviews
from benchmarks.report import machine
from inference import OnnxPredictor, WordPiece, explainer_for, load_bundle
from training.models import MiniLMClassifier

MIN_WORDS = 3  # a rank correlation of fewer words says little


@dataclass(frozen=True)
class Agreement:
    spearman: float
    same_top_word: bool
    words: int
    completeness_gap: float  # |sum(IG) - (logit - baseline logit)|, in logits


def spearman(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Rank correlation (ties get their mean rank)."""

    def ranks(x: NDArray[np.float64]) -> NDArray[np.float64]:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x), dtype=np.float64)
        r[order] = np.arange(len(x), dtype=np.float64)
        for value in np.unique(x):  # ties: the mean of their ranks
            same = x == value
            r[same] = r[same].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


class IntegratedGradients:
    def __init__(self, model: MiniLMClassifier, preprocessor: WordPiece, steps: int) -> None:
        from captum.attr import LayerIntegratedGradients

        self.model = model.eval()
        self.preprocessor = preprocessor
        self.steps = steps
        embeddings = cast(Any, model.encoder).get_input_embeddings()  # a BertModel's
        self.ig = LayerIntegratedGradients(self._forward, embeddings)

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)  # type: ignore[no-any-return]

    def word_weights(self, text: str) -> tuple[list[float], float]:
        """Per word (in Occlusion's order), and the completeness gap."""
        encoding = self.preprocessor.encode_one(text)
        ids = torch.tensor([encoding.ids])
        mask = torch.tensor([encoding.attention_mask])
        special = torch.tensor([w is None for w in encoding.word_ids])
        baseline = torch.where(special, ids, torch.zeros_like(ids))  # [PAD] is 0
        attributions, delta = self.ig.attribute(
            ids,
            baselines=baseline,
            additional_forward_args=(mask,),
            n_steps=self.steps,
            internal_batch_size=self.steps,
            return_convergence_delta=True,
        )
        per_piece = attributions.sum(dim=-1)[0].detach().numpy()
        pieces: dict[int, list[int]] = {}
        for position, word in enumerate(encoding.word_ids):
            if word is not None:
                pieces.setdefault(word, []).append(position)
        weights = [float(per_piece[g].sum()) for g in pieces.values()]
        return weights, float(abs(delta.item()))


def measure(
    bundle_dir: Path, weights: Path, reviews: Path, count: int, seed: int, steps: int
) -> tuple[list[Agreement], int]:
    bundle = load_bundle(bundle_dir)
    predictor = OnnxPredictor(bundle, intra_op_threads=torch.get_num_threads())
    occlusion = explainer_for(predictor)
    preprocessor = predictor.preprocessor
    if not isinstance(preprocessor, WordPiece):
        raise typer.BadParameter("the bundle is not of the accurate family (WordPiece)")
    ig = IntegratedGradients(_model(weights), preprocessor, steps)
    out, skipped = [], 0
    for text in sample_reviews(reviews, count, seed):
        occluded = np.asarray([w.weight for w in occlusion.explain(text).words])
        if len(occluded) < MIN_WORDS:
            skipped += 1
            continue
        integrated, gap = ig.word_weights(text)
        ig_weights = np.asarray(integrated)
        assert len(ig_weights) == len(occluded)  # the same encoding, the same words
        out.append(
            Agreement(
                spearman=spearman(occluded, ig_weights),
                same_top_word=int(np.argmax(np.abs(occluded)))
                == int(np.argmax(np.abs(ig_weights))),
                words=len(occluded),
                completeness_gap=gap,
            )
        )
    return out, skipped


def _model(weights: Path) -> MiniLMClassifier:
    from training.families import minilm_dir

    model = MiniLMClassifier.pretrained(minilm_dir(), dropout=0.0)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


app = typer.Typer(add_completion=False)


@app.command()
def main(
    bundle: Annotated[Path, typer.Option(help="an accurate bundle folder")],
    weights: Annotated[Path, typer.Option(help="the torch state_dict behind the bundle")],
    reviews: Annotated[Path, typer.Option(help="reviews with a text column")] = DEFAULT_REVIEWS,
    count: Annotated[int, typer.Option(min=1, help="reviews, a seeded sample")] = 30,
    seed: Annotated[int, typer.Option(help="the sample's seed")] = 0,
    steps: Annotated[int, typer.Option(min=2, help="Integrated Gradients steps")] = 32,
    output: Annotated[Path, typer.Option(help="folder for the JSON")] = ARTIFACTS,
) -> None:
    """Spearman agreement of occlusion (ONNX) and Integrated Gradients (torch), per review."""
    started = time.perf_counter()
    results, skipped = measure(bundle, weights, reviews, count, seed, steps)
    rho = np.asarray([r.spearman for r in results], dtype=np.float64)
    summary: dict[str, Any] = {
        "reviews": len(results),
        "skipped_short": skipped,
        "spearman_mean": float(np.nanmean(rho)),
        "spearman_median": float(np.nanmedian(rho)),
        "same_top_word_rate": float(np.mean([r.same_top_word for r in results])),
        "words_mean": float(np.mean([r.words for r in results])),
        "completeness_gap_median": float(np.median([r.completeness_gap for r in results])),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = output / f"ig-agreement-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "created_at": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "settings": {
            "bundle": str(bundle),
            "weights": str(weights),
            "reviews": str(reviews),
            "count": count,
            "seed": seed,
            "steps": steps,
        },
        "seconds": time.perf_counter() - started,
        **summary,
    }
    path.write_text(json.dumps(document, indent=1))
    typer.echo(
        f"occlusion vs Integrated Gradients ({steps} steps) on {len(results)} reviews: "
        f"Spearman mean {summary['spearman_mean']:.3f}, median {summary['spearman_median']:.3f}; "
        f"same top word {summary['same_top_word_rate']:.0%}; "
        f"median completeness gap {summary['completeness_gap_median']:.3g} logits"
    )
    typer.echo(f"saved {path}")


if __name__ == "__main__":
    app()
