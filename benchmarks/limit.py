"""Scenario 1, the limit: preprocessing + ONNX Runtime in process, batched, no I/O."""

from __future__ import annotations

import time
from collections.abc import Sequence

from benchmarks.load import repeat_batches
from inference import OnnxPredictor


def measure_limit(
    predictor: OnnxPredictor, texts: Sequence[str], *, batch_size: int
) -> dict[str, float]:
    """Reviews per second for preprocessing alone, inference alone, and both."""
    batches = repeat_batches(texts, batch_size)
    started = time.perf_counter()
    encoded = [predictor.preprocessor.encode(batch) for batch in batches]
    preprocessing = time.perf_counter() - started

    started = time.perf_counter()
    for inputs in encoded:
        predictor.run(inputs)
    inference = time.perf_counter() - started

    started = time.perf_counter()
    for batch in batches:
        predictor.predict(batch)
    both = time.perf_counter() - started

    count = len(texts)
    return {
        "preprocessing": count / preprocessing,
        "inference": count / inference,
        "end_to_end": count / both,
    }
