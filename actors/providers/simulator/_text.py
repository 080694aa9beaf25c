"""Deterministic answers derived from the prompt, with realistic token counts."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .._tokens import approx_tokens

__all__ = ["Answer", "answer", "input_tokens"]

_VOCABULARY = (
    "the of and to in is that it for as with was on be by this are from at or an have not "
    "which but all can they more one their has been were there when will would what about "
    "model answer request token provider latency stream gateway route budget quota limit cache "
    "breaker health metric event reply queue system result value state data signal review "
    "simple clear fast exact steady careful useful quiet bright early later often rarely"
)
_WORDS = tuple(_VOCABULARY.split())

# Per message, and for priming the reply, as OpenAI documents for its chat format.
_PER_MESSAGE = 3
_REPLY_PRIMING = 3


def input_tokens(texts: Sequence[str]) -> int:
    """Prompt tokens of a conversation given as its message texts."""
    return sum(approx_tokens(t) + _PER_MESSAGE for t in texts) + _REPLY_PRIMING


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    pieces: list[str]  # the text, cut where a stream would send its chunks
    input_tokens: int
    output_tokens: int
    finish: Literal["stop", "length"]


def answer(model: str, texts: Sequence[str], max_tokens: int | None) -> Answer:
    """The same prompt to the same model always gets the same answer."""
    digest = hashlib.sha256("\x00".join([model, *texts]).encode()).digest()
    count = 12 + digest[0] % 40
    stream = hashlib.shake_256(digest).digest(count)
    words = ["Simulated", "answer:"] + [_WORDS[b % len(_WORDS)] for b in stream]
    text = " ".join(words) + "."
    finish: Literal["stop", "length"] = "stop"
    if max_tokens is not None and approx_tokens(text) > max_tokens:
        text = text[: max_tokens * 4]  # about four characters a token
        finish = "length"
    pieces = re.findall(r" ?\S+", text)
    return Answer(text, pieces, input_tokens(texts), approx_tokens(text), finish)
