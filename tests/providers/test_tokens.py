"""The token estimate against real tokenizers' counts of 66 varied prompts.

``data/token_counts.json`` holds the prompts and their token counts by OpenAI's
o200k_base and cl100k_base (tiktoken 0.14.0, cross-checked with js-tiktoken and
gpt-tokenizer) and by Anthropic's legacy (Claude 2) tokenizer; the counts were
made offline once, the tokenizers are not needed here.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.providers import estimate_prompt_tokens, estimate_tokens

ROWS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "token_counts.json").read_text(encoding="utf-8")
)


def _estimate(row: dict[str, Any]) -> tuple[int, dict[str, int]]:
    text = row["text"]
    if isinstance(text, list):  # a conversation: counted with the chat framing
        estimate = estimate_prompt_tokens(m["content"] for m in text)
        return estimate, {"o200k": row["o200k_chat"], "cl100k": row["cl100k_chat"]}
    return estimate_tokens(text), {"o200k": row["o200k"], "cl100k": row["cl100k"]}


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_never_low_against_openai_tokenizers(row: dict[str, Any]) -> None:
    estimate, truth = _estimate(row)
    for encoding, count in truth.items():
        assert estimate >= count, f"{encoding}: estimated {estimate} < {count}"


def test_not_wildly_high_on_ordinary_text() -> None:
    ordinary = {"chat_short", "english_long", "conversation", "german", "french", "spanish"}
    ratios = [_estimate(r)[0] / _estimate(r)[1]["o200k"] for r in ROWS if r["kind"] in ordinary]
    assert statistics.median(ratios) < 1.4


@given(st.text())
def test_never_more_than_bytes_and_never_negative(text: str) -> None:
    estimate = estimate_tokens(text)
    assert 0 <= estimate <= len(text.encode()) + 1
    assert (estimate == 0) == (text == "")


def test_conversation_adds_framing() -> None:
    assert estimate_prompt_tokens(["hi"]) == estimate_tokens("hi") + 4 + 3
    assert estimate_prompt_tokens([]) == 3


@given(st.lists(st.text(), min_size=65, max_size=150))
def test_a_long_conversation_priced_in_one_go_is_never_lower(texts: list[str]) -> None:
    """Past 64 messages the conversation is classified at once (for speed): never lower
    than pricing each message, and at most two tokens a message higher."""
    one_by_one = sum(estimate_tokens(t) + 4 for t in texts) + 3
    assert one_by_one <= estimate_prompt_tokens(texts) <= one_by_one + 2 * len(texts)
