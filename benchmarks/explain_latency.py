"""Scenario 7, explaining: the time of one explanation per review, per model family, in process.

The fast model's explanation is one ONNX Runtime run of a few hundred one-column rows; the
accurate model's occlusion runs the encoder once per word, so it costs about as many
classifications as the review has words. Without a trained accurate bundle, the scenario builds
one from the pretrained all-MiniLM-L6-v2 encoder with an untrained head: the real graph and
cost, meaningless answers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from inference import Bundle, OnnxPredictor, explainer_for

ACCURATE_MAX_LENGTH = 128  # the setting a CPU fine-tune uses (README, Training)


def explain_ms(bundle: Bundle, texts: Sequence[str]) -> list[float]:
    """Milliseconds per ``explain`` on the workers' ONNX Runtime settings (1 thread)."""
    explainer = explainer_for(OnnxPredictor(bundle))
    explainer.explain("A short warm-up.")  # the first run allocates
    out = []
    for text in texts:
        started = time.perf_counter()
        explainer.explain(text)
        out.append((time.perf_counter() - started) * 1000)
    return out


def untrained_accurate_bundle(work: Path, max_length: int = ACCURATE_MAX_LENGTH) -> Bundle:
    """all-MiniLM-L6-v2 with a random head, exported as training exports it (~30 s on a CPU)."""
    import torch

    from export.release import Candidate, build_bundle
    from export.settings import Settings as ExportSettings
    from inference import WordPiece
    from training.families import minilm_dir
    from training.models import MiniLMClassifier

    torch.manual_seed(0)
    tokenizer = minilm_dir() / "tokenizer.json"
    candidate = Candidate(
        MiniLMClassifier.pretrained(minilm_dir(), dropout=0.1).eval(),
        "accurate",
        WordPiece(tokenizer, max_length=max_length),
        (tokenizer,),
    )
    bundle, _ = build_bundle(candidate, ["Great."], ExportSettings(), work, run_id="benchmark")
    return bundle
