"""Scenario 1, the limit: preprocessing + ONNX Runtime in process, batched, no I/O."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from benchmarks.load import repeat_batches
from inference import HashedNgrams, OnnxPredictor
from inference.preprocessing import Inputs, Preprocessor, hashed_ngrams_one, pad_rows


def row_by_row(preprocessor: HashedNgrams, texts: list[str]) -> Inputs:
    """The fast model's preprocessing before the batch path, kept as the baseline measured in
    the same run: the definition (regex, ``zlib.crc32``) one text at a time, padded row by
    row. Its ids are the batch path's, to the last one (tests/inference/test_preprocessing)."""
    return pad_rows(
        [hashed_ngrams_one(t, preprocessor.buckets, preprocessor.max_tokens) for t in texts]
    )


def reviews_per_s(encode: Callable[[list[str]], Inputs], batches: list[list[str]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        encode(batch)
    return sum(map(len, batches)) / (time.perf_counter() - started)


def measure_limit(
    predictor: OnnxPredictor, texts: Sequence[str], *, batch_size: int
) -> dict[str, float]:
    """Reviews per second for preprocessing alone, inference alone, and both; for the fast
    model also the preprocessing before the batch path (``preprocessing_before``)."""
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
    figures = {
        "preprocessing": count / preprocessing,
        "inference": count / inference,
        "end_to_end": count / both,
    }
    prep = predictor.preprocessor
    if isinstance(prep, HashedNgrams):
        figures["preprocessing_before"] = reviews_per_s(lambda b: row_by_row(prep, b), batches)
    return figures


def measure_preprocessing(
    preprocessor: Preprocessor, texts: Sequence[str], *, batch_size: int
) -> float:
    """Reviews per second of one preprocessor alone (another family's, beside the run's)."""
    return reviews_per_s(preprocessor.encode, repeat_batches(texts, batch_size))
