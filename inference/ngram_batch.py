"""The hashed n-gram ids of a whole batch at once, in numpy: the fast path of ``HashedNgrams``.

It equals :func:`inference.preprocessing.hashed_ngrams_one` (the definition, one text at a
time: regex tokens, ``zlib.crc32``) id for id, but touches each byte with a few vectorised
numpy operations instead of the regex engine and a Python call per token:

1. each text is lowercased by Python (``str.lower``, so "İ" and the Kelvin sign lower as they
   always have) and the batch joined into one UTF-8 buffer, texts separated by newlines. Every
   token character is ASCII and no byte of a multi-byte character is, so tokens can be found in
   the bytes;
2. tokens are runs of ``[a-z0-9]`` and single ``!`` or ``?``, found where the byte class
   changes; an apostrophe followed by letters extends a run, as the regex's ``(?:'[a-z]+)?``;
3. the CRC32 of every token, one byte column at a time over all the tokens of the batch (sorted
   by length, so that the tokens still going at a column are a prefix of them), with zlib's
   table;
4. bigrams, truncation to ``max_tokens`` and padding for the whole batch in array operations.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

BIGRAM_MIX = np.uint64(1_000_003)
_SEPARATOR = b"\n"  # no token character: a token never spans two texts
_APOSTROPHE, _BANG, _QUESTION = ord("'"), ord("!"), ord("?")
# Longer tokens (rare: URLs, "soooooo") are hashed one by one by zlib rather than adding
# columns to the vectorised loop that almost no token reaches.
_LONGEST_VECTORISED = 24
# Characters of a text tokenized per kept token at first; a text whose prefix holds no more
# than max_tokens tokens is tokenized again whole (see ``tokens``).
_CHARS_PER_TOKEN = 8


def _crc_table() -> NDArray[np.uint32]:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):  # the reflected CRC-32 polynomial, as zlib
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0xEDB88320), table >> 1)
    return table.astype(np.uint32)


_CRC_TABLE = _crc_table()


@dataclass(frozen=True)
class Tokens:
    """A batch's tokens, text after text: bytes ``[start, end)`` of ``data``; ``count[i]``
    tokens belong to text i."""

    data: NDArray[np.uint8]
    start: NDArray[np.int64]
    end: NDArray[np.int64]
    count: NDArray[np.int64]

    def first(self, limit: int) -> Tokens:
        """The first ``limit`` tokens of each text."""
        kept = np.minimum(self.count, limit)
        if (kept == self.count).all():
            return self
        skipped = self.count - kept
        skipped_before = np.cumsum(skipped) - skipped
        index = np.arange(int(kept.sum())) + np.repeat(skipped_before, kept)
        return Tokens(self.data, self.start[index], self.end[index], kept)

    def text(self) -> NDArray[np.int64]:
        """The text each token belongs to."""
        return np.repeat(np.arange(len(self.count)), self.count)


def _is_letter(b: NDArray[np.uint8]) -> NDArray[np.bool_]:
    return (b - np.uint8(ord("a"))) < 26  # uint8 wraps: one comparison per range


def _find(texts: list[bytes]) -> Tokens:
    """Every token of each text (all bytes, lowercased)."""
    data = np.frombuffer(_SEPARATOR + _SEPARATOR.join(texts) + _SEPARATOR, dtype=np.uint8)
    letter = _is_letter(data)
    alnum = letter | ((data - np.uint8(ord("0"))) < 10)
    mark = (data == _BANG) | (data == _QUESTION)
    # The buffer starts and ends with a separator: every token has a start and an end.
    start = np.flatnonzero((alnum[1:] & ~alnum[:-1]) | mark[1:]) + 1
    end = np.flatnonzero((alnum[:-1] & ~alnum[1:]) | mark[:-1]) + 1
    start, end = _apostrophes(data, letter, alnum, start, end)
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + len(_SEPARATOR)
    text_start = np.cumsum(sizes) - sizes + len(_SEPARATOR)
    first_token = np.searchsorted(start, np.append(text_start, len(data)))
    return Tokens(data, start, end, np.diff(first_token))


def _apostrophes(
    data: NDArray[np.uint8],
    letter: NDArray[np.bool_],
    alnum: NDArray[np.bool_],
    start: NDArray[np.int64],
    end: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Tokens extended over an apostrophe and the letters after it. Token j + 1 continues
    token j when one apostrophe lies between a letter or digit and a letter: token j takes
    the apostrophe and the letters up to the first digit, and token j + 1 keeps the rest."""
    apostrophe = np.flatnonzero(data == _APOSTROPHE)
    apostrophe = apostrophe[alnum[apostrophe - 1] & letter[apostrophe + 1]]
    if len(apostrophe) == 0:
        return start, end
    left = np.searchsorted(end, apostrophe)  # the token ending at the apostrophe
    right = left + 1
    digits = np.append(np.flatnonzero(alnum & ~letter), len(data))
    letters_end = np.minimum(digits[np.searchsorted(digits, start[right])], end[right])
    # A token takes one apostrophe at most: in "a'b'c", "a'b" takes all of "b", whose own
    # apostrophe then joins nothing. Only chains (rare) need this left-to-right walk.
    joins = np.ones(len(left), dtype=bool)
    for k in np.flatnonzero(left[1:] == right[:-1]).tolist():
        if joins[k] and letters_end[k] == end[right[k]]:
            joins[k + 1] = False
    left, right, letters_end = left[joins], right[joins], letters_end[joins]
    start, end = start.copy(), end.copy()
    end[left] = letters_end
    start[right] = letters_end
    emptied = right[start[right] == end[right]]
    return np.delete(start, emptied), np.delete(end, emptied)


def _utf8(text: str) -> bytes:
    # A lone surrogate (JSON may carry one) becomes three non-ASCII bytes: no token, as for
    # the regex, rather than an error.
    return text.encode("utf-8", "surrogatepass")


def tokens(texts: list[str], max_tokens: int) -> Tokens:
    """The first ``max_tokens`` tokens of each text, lowercased as ``str.lower`` does."""
    lowered = [t.lower() for t in texts]
    # Most of a long text lies past its max_tokens-th token. The tokens found in a prefix are
    # the text's own but perhaps the last (cut, or missing its "'s"): a prefix holding more
    # than max_tokens tokens is enough. Where one is not (rare), the batch is tokenized again
    # with that text whole.
    budget = (max_tokens + 1) * _CHARS_PER_TOKEN
    cut = [_utf8(t[:budget]) for t in lowered]
    found = _find(cut)
    lengths = np.fromiter(map(len, lowered), dtype=np.int64, count=len(texts))
    again = ((found.count <= max_tokens) & (lengths > budget)).tolist()
    if any(again):
        found = _find([_utf8(t) if a else c for t, c, a in zip(lowered, cut, again, strict=True)])
    return found.first(max_tokens)


def crc32(found: Tokens) -> NDArray[np.uint32]:
    """``zlib.crc32`` of each token's bytes."""
    lengths = found.end - found.start
    long = lengths > _LONGEST_VECTORISED
    vectorised = np.where(long, 0, lengths)
    order = np.argsort(-vectorised.astype(np.int8), kind="stable")  # longest first (radix)
    # going[k]: how many tokens are longer than k bytes, the first ones of ``order``
    going = len(lengths) - np.cumsum(np.bincount(vectorised, minlength=_LONGEST_VECTORISED + 1))
    starts = found.start[order]
    crc = np.full(len(order), 0xFFFFFFFF, dtype=np.uint32)
    for column in range(int(vectorised.max(initial=0))):
        n = int(going[column])
        head = crc[:n]
        index = (head ^ found.data.take(starts[:n] + column)) & np.uint32(0xFF)
        crc[:n] = _CRC_TABLE.take(index) ^ (head >> np.uint32(8))
    result = np.empty_like(crc)
    result[order] = crc ^ np.uint32(0xFFFFFFFF)
    for i in np.flatnonzero(long).tolist():
        result[i] = zlib.crc32(found.data[found.start[i] : found.end[i]].tobytes())
    return result


def _bucket(hashes: NDArray[np.uint64], buckets: int) -> NDArray[np.int64]:
    modulus = np.uint64(buckets - 1)
    # floor division by a scalar is vectorised by numpy (libdivide), the remainder is not
    return (hashes - (hashes // modulus) * modulus + np.uint64(1)).astype(np.int64)


def hashed_ngrams(
    texts: list[str], buckets: int, max_tokens: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Ids [len(texts), width] (each row: unigram ids, then bigram ids, then 0s) and each
    row's length, ``2 * words - 1`` (0 for a text without words)."""
    found = tokens(texts, max_tokens)
    unigrams = crc32(found).astype(np.uint64)
    words = found.count
    lengths = np.where(words > 0, 2 * words - 1, 0)
    width = max(1, int(lengths.max(initial=0)))
    text = found.text()
    first_word = np.cumsum(words) - words
    unigram_at = text * width + np.arange(len(text)) - first_word[text]
    # Flat ids with one spare slot at the end, where the "bigram" of each text's last word
    # and the next text's first word goes, to be cut off.
    ids = np.zeros(len(texts) * width + 1, dtype=np.int64)
    ids[unigram_at] = _bucket(unigrams, buckets)
    bigram_at = unigram_at[:-1] + words[text[:-1]]
    last_word = (first_word + words - 1)[words > 0]
    bigram_at[last_word[last_word < len(bigram_at)]] = len(ids) - 1
    ids[bigram_at] = _bucket((unigrams[:-1] * BIGRAM_MIX) ^ unigrams[1:], buckets)
    return ids[:-1].reshape(len(texts), width), lengths
