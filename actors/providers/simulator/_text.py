"""Deterministic answers derived from the prompt, with realistic token counts."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._tokens import approx_tokens

__all__ = ["Answer", "answer", "input_tokens", "instance_of"]

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


def answer(
    model: str,
    texts: Sequence[str],
    max_tokens: int | None,
    shape: dict[str, Any] | None = None,
) -> Answer:
    """The same prompt to the same model always gets the same answer. With ``shape``
    (a JSON Schema; ``{}``: any JSON object) the answer is JSON that follows it."""
    digest = hashlib.sha256("\x00".join([model, *texts]).encode()).digest()
    count = 12 + digest[0] % 40
    stream = hashlib.shake_256(digest).digest(count)
    words = ["Simulated", "answer:"] + [_WORDS[b % len(_WORDS)] for b in stream]
    text = " ".join(words) + "."
    if shape is not None:
        found = _instance(shape or {"type": "object", "properties": {"answer": {"type": "string"}}},
                          shape, words[2:], 0)  # fmt: skip
        text = json.dumps(found, separators=(", ", ": "))
    finish: Literal["stop", "length"] = "stop"
    if max_tokens is not None and approx_tokens(text) > max_tokens:
        text = text[: max_tokens * 4]  # about four characters a token
        finish = "length"
    pieces = re.findall(r" ?\S+", text)
    return Answer(text, pieces, input_tokens(texts), approx_tokens(text), finish)


def instance_of(schema: dict[str, Any], seed: str) -> Any:
    """A value that follows ``schema`` (a tool's parameters), the same for the same seed."""
    digest = hashlib.sha256(seed.encode()).digest()
    words = [_WORDS[b % len(_WORDS)] for b in hashlib.shake_256(digest).digest(16)]
    return _instance(schema or {"type": "object"}, schema, words, 0)


def _instance(schema: Any, root: dict[str, Any], words: list[str], depth: int) -> Any:
    """A value that follows ``schema`` (the common JSON Schema words: type, properties,
    items, enum, const, anyOf/oneOf/allOf, $ref to $defs), made of the answer's words."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _instance(target, root, words, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [
                o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")
            ]
            return _instance((options or schema[key])[0], root, words, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged |= part
        return _instance(merged, root, words, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    word = words[depth % len(words)] if words else "value"
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _instance(sub, root, words[i + 1 :] or words, depth + 1)
                for i, (name, sub) in enumerate(properties.items())}  # fmt: skip
    if kind == "array":
        least = schema.get("minItems", 1)
        return [_instance(schema.get("items", {}), root, words, depth + 1)
                for _ in range(max(1, least))]  # fmt: skip
    if kind == "integer":
        return max(schema.get("minimum", 0), min(len(word), schema.get("maximum", 10**9)))
    if kind == "number":
        return float(
            max(schema.get("minimum", 0), min(len(word) + 0.5, schema.get("maximum", 1e9)))
        )
    if kind == "boolean":
        return len(word) % 2 == 0
    if kind == "null":
        return None
    text = word
    least = schema.get("minLength", 0)
    return (text * (least // max(1, len(text)) + 1)) if len(text) < least else text


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"
