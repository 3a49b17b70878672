"""The batch path of ``HashedNgrams`` (numpy, ``inference.ngram_batch``) against the definition
(``hashed_ngrams_one``: regex tokens and ``zlib.crc32``, one text at a time): equal ids, equal
masks, for real reviews and for the texts where the two could part ways."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from benchmarks.data import load_reviews
from inference import HashedNgrams
from inference.preprocessing import hashed_ngrams_one, pad_rows, token_spans

TRICKY = [
    "",
    " ",
    "\n\n",
    "!!!???",
    "a",
    "NOT good!! Don't go?",
    "don't'stop a'b'c'd rock'n'roll x'9 9'a a''b it's5am '!' 'quoted' end'",
    "12'ab3'cd'ef4 a1'b2'c3 ab'cd'9e",
    "İstanbul İİ i̇ KELVIN \u212a ok",  # lowercasing lengthens "İ"; the Kelvin sign lowers to "k"
    "héllo wörld café naïve façade Σ ΣΑΣ ß straße",
    "emoji 🙂🙂 between🙂words and\x00nul\ttab\r\nend",
    "lone\ud800surrogate \udcff from JSON",  # valid in a str, not in UTF-8
    "x" * 30 + "'" + "y" * 5 + " " + "z" * 300,  # tokens longer than the vectorised columns
    " b" * 500,  # more than max_tokens words
    "word " * 399 + "last'one",
    "http://example.com/a?b=c&d=e!",
]


def padded(
    texts: list[str], buckets: int, max_tokens: int
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """What ``encode`` returned before the batch path: the definition's rows, padded."""
    inputs = pad_rows([hashed_ngrams_one(t, buckets, max_tokens) for t in texts])
    return inputs["ids"], inputs["mask"]


def assert_same(texts: list[str], buckets: int, max_tokens: int) -> None:
    inputs = HashedNgrams(buckets=buckets, max_tokens=max_tokens).encode(texts)
    ids, mask = padded(texts, buckets, max_tokens)
    assert inputs["ids"].dtype == np.int64
    assert inputs["mask"].dtype == np.float32
    np.testing.assert_array_equal(inputs["ids"], ids)
    np.testing.assert_array_equal(inputs["mask"], mask)


@pytest.mark.parametrize(("max_tokens", "batch"), [(400, 256), (64, 256), (3, 7)])
def test_batches_of_the_yelp_test_file_equal_the_definition(max_tokens: int, batch: int) -> None:
    # the shared test file where it is beside the checkout, else its sample in the repository
    texts = [text for text, _ in load_reviews()] + TRICKY
    for i in range(0, len(texts), batch):
        assert_same(texts[i : i + batch], 1 << 18, max_tokens)


@pytest.mark.parametrize("max_tokens", [1, 2, 400])
def test_tricky_texts_equal_the_definition_alone_and_together(max_tokens: int) -> None:
    assert_same(TRICKY, 1 << 19, max_tokens)
    for text in TRICKY:
        assert_same([text], 1 << 19, max_tokens)


def test_random_texts_over_a_hard_alphabet_equal_the_definition() -> None:
    """Apostrophe chains, marks, digits, separators and lengthening characters in every
    arrangement, with limits small enough that texts are cut and tokenized again."""
    rng = np.random.default_rng(0)
    alphabet = [*"ab'' 09!?Z\n", "İ", "\u212a", "é", "Σ", "\x00", "🙂", "\ud800", "A'"]
    for _ in range(500):
        texts = [
            "".join(rng.choice(alphabet, size=int(rng.integers(0, 120))))
            for _ in range(int(rng.integers(0, 6)))
        ]
        assert_same(texts, int(rng.integers(2, 5000)), int(rng.integers(1, 8)))


def test_an_empty_batch_has_one_column() -> None:
    inputs = HashedNgrams().encode([])
    assert inputs["ids"].shape == (0, 1)
    assert inputs["mask"].shape == (0, 1)


def test_rows_and_features_are_the_unpadded_rows() -> None:
    prep = HashedNgrams(buckets=1 << 18, max_tokens=400)
    for text, row in zip(TRICKY, prep.rows(TRICKY), strict=True):
        np.testing.assert_array_equal(row, hashed_ngrams_one(text, 1 << 18, 400))
        np.testing.assert_array_equal(prep.features(text), row)


def test_spans_name_one_word_per_unigram() -> None:
    """Explanations map the i-th unigram to the i-th span: the counts must agree."""
    prep = HashedNgrams(buckets=1 << 18, max_tokens=400)
    for text in TRICKY:
        words = (len(prep.features(text)) + 1) // 2
        assert len(token_spans(text)[:400]) == words, text
