"""Embeddings whose similarity follows the words two texts share, for every
simulated embeddings API."""

from __future__ import annotations

import functools
import hashlib
import math
import re
import struct

__all__ = ["DIMENSIONS", "embedding"]

DIMENSIONS = {"text-embedding-3-large": 3072, "gemini-embedding-001": 3072}  # others: 1536
_WORD = re.compile(r"[a-z0-9]+")
# Words that say little of what a text is about count a quarter of the others.
_LIGHT = frozenset(
    {
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "and",
        "or",
        "by",
        "with",
        "as",
        "it",
        "this",
        "that",
        "what",
        "which",
        "how",
        "who",
        "me",
        "my",
        "i",
        "you",
        "your",
        "we",
        "our",
        "do",
        "does",
        "did",
        "can",
        "could",
        "would",
        "should",
        "please",
        "tell",
        "s",
    }
)


@functools.lru_cache(maxsize=65_536)
def _word_vector(word: str, dimensions: int) -> tuple[float, ...]:
    raw = hashlib.shake_256(word.encode()).digest(2 * dimensions)
    return tuple(v / 32768 for v in struct.unpack(f"<{dimensions}h", raw))


def embedding(text: str | list[int], dimensions: int) -> list[float]:
    """A bag of words: the similarity of two texts follows the words they share (each
    word a fixed random direction; plural s dropped; common words weigh less). Token ids
    are words of their own."""
    if not isinstance(text, str):
        text = " ".join(f"t{token}" for token in text)
    total = [0.0] * dimensions
    words = {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _WORD.findall(text.lower())}
    for word in words:
        weight = 0.25 if word in _LIGHT else 1.0
        for i, value in enumerate(_word_vector(word, dimensions)):
            total[i] += weight * value
    norm = math.sqrt(sum(v * v for v in total)) or 1.0
    return [v / norm for v in total]
