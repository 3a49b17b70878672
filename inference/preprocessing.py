"""Text -> model inputs. The one implementation used by training and by serving.

Two kinds, named in a bundle's manifest:

- ``hashed_ngrams`` (the fast model): lowercased word and punctuation tokens, unigrams and
  bigrams hashed (CRC32, stable across processes and machines) into ``buckets - 1`` ids;
  0 is padding. Output: ``ids`` int64 [batch, length] and ``mask`` float32 [batch, length],
  padded to the longest row of the batch. :func:`hashed_ngrams_one` is the definition, one
  text at a time; ``HashedNgrams`` computes the same ids for a whole batch at once in numpy
  (``inference.ngram_batch``), several times faster.
- ``wordpiece`` (the accurate model): a Hugging Face ``tokenizers`` tokenizer file shipped in the
  bundle. Output: ``input_ids`` and ``attention_mask``, int64 [batch, length].
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from inference.ngram_batch import BIGRAM_MIX, hashed_ngrams

if TYPE_CHECKING:
    from tokenizers import Encoding

Inputs = dict[str, NDArray[Any]]

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


class Preprocessor(Protocol):
    def config(self) -> dict[str, Any]: ...

    def encode(self, texts: list[str]) -> Inputs: ...


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def token_spans(text: str) -> list[tuple[int, int]]:
    """Where each of ``tokenize(text)`` lies in ``text``: (start, end) character offsets.

    Lowercasing may lengthen a character ("İ" -> "i̇"), so offsets in the lowered text are
    mapped back through the character each lowered one came from.
    """
    origin: list[int] = []
    for i, char in enumerate(text):
        origin.extend([i] * len(char.lower()))
    lowered = "".join(char.lower() for char in text)
    return [(origin[m.start()], origin[m.end() - 1] + 1) for m in _TOKEN.finditer(lowered)]


def hashed_ngrams_one(text: str, buckets: int, max_tokens: int) -> NDArray[np.int64]:
    """The definition of a text's hashed n-gram ids, plainly and slowly: the first
    ``max_tokens`` tokens, each unigram's CRC32, each bigram ``(u[i] * 1_000_003) ^ u[i+1]``
    (uint64), all ``% (buckets - 1) + 1``; unigrams first. ``HashedNgrams`` must equal it."""
    words = tokenize(text)[:max_tokens]
    if not words:
        return np.zeros(0, dtype=np.int64)
    unigrams = np.fromiter(
        (zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words)
    )
    bigrams = (unigrams[:-1] * BIGRAM_MIX) ^ unigrams[1:]
    hashed = np.concatenate([unigrams, bigrams]) % np.uint64(buckets - 1) + np.uint64(1)
    return hashed.astype(np.int64)


def pad_rows(rows: Sequence[NDArray[np.int64]]) -> Inputs:
    """Rows of ids padded with 0 to the longest (at least 1 wide), with the mask of the real
    ids: what ``HashedNgrams.encode`` returns for the texts of those rows."""
    width = max(1, max((len(row) for row in rows), default=1))
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.float32)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1.0
    return {"ids": ids, "mask": mask}


class HashedNgrams:
    kind = "hashed_ngrams"

    def __init__(self, buckets: int = 1 << 18, max_tokens: int = 400) -> None:
        if buckets < 2 or max_tokens < 1:
            raise ValueError("buckets must be >= 2 and max_tokens >= 1")
        self.buckets = buckets
        self.max_tokens = max_tokens

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "buckets": self.buckets, "max_tokens": self.max_tokens}

    def features(self, text: str) -> NDArray[np.int64]:
        """Hashed unigram and bigram ids (1..buckets-1) of one text (an explanation's): the
        definition itself, cheaper than the batch path's fixed cost for a single text."""
        return hashed_ngrams_one(text, self.buckets, self.max_tokens)

    def rows(self, texts: list[str]) -> list[NDArray[np.int64]]:
        """Each text's ids, unpadded."""
        ids, lengths = hashed_ngrams(texts, self.buckets, self.max_tokens)
        return [ids[i, :n].copy() for i, n in enumerate(lengths.tolist())]

    def encode(self, texts: list[str]) -> Inputs:
        ids, lengths = hashed_ngrams(texts, self.buckets, self.max_tokens)
        mask = (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.float32)
        return {"ids": ids, "mask": mask}


class WordPiece:
    kind = "wordpiece"

    def __init__(self, tokenizer_file: Path, max_length: int = 256) -> None:
        from tokenizers import Tokenizer

        self.tokenizer_file = tokenizer_file
        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token
        self.cls_id = self._tokenizer.token_to_id("[CLS]")
        self.sep_id = self._tokenizer.token_to_id("[SEP]")

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tokenizer": self.tokenizer_file.name,
            "max_length": self.max_length,
        }

    def vocabulary_size(self) -> int:
        return int(self._tokenizer.get_vocab_size())

    def encode_one(self, text: str) -> Encoding:
        """One text's tokens, with the word each piece belongs to and its character offsets."""
        return self._tokenizer.encode(text)

    def encode(self, texts: list[str]) -> Inputs:
        encodings = self._tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }


def preprocessor_for(config: dict[str, Any], bundle_dir: Path) -> Preprocessor:
    """Build the preprocessor a bundle's manifest describes."""
    kind = config.get("kind")
    if kind == HashedNgrams.kind:
        return HashedNgrams(buckets=int(config["buckets"]), max_tokens=int(config["max_tokens"]))
    if kind == WordPiece.kind:
        from inference.bundle import bundle_file  # the bundle imports no preprocessing

        return WordPiece(
            bundle_file(bundle_dir, str(config["tokenizer"])),
            max_length=int(config["max_length"]),
        )
    raise ValueError(f"unknown preprocessing kind {kind!r}")
