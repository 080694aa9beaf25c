"""What a request may ask beyond text and sampling (OpenAI's parameters), and which
provider can be asked it: the planner keeps only the candidates that can take every
parameter a request uses, and says which one when none can. Nothing is dropped.

A *feature* is a name for a parameter or a kind of it (``json_schema`` for
``response_format: {"type": "json_schema", ...}``). The catalog says which features
each model has (``[features]``, per model ``adds``/``lacks``); ``TRANSLATED`` says
which of them each adapter carries to its API. A candidate takes a feature when both
say so.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "FEATURES",
    "TRANSLATED",
    "Effort",
    "JsonSchemaFormat",
    "LogitBias",
    "Penalty",
    "ResponseFormat",
    "Seed",
    "features_of",
]

# Every feature, and the request field it comes from.
FEATURES: dict[str, str] = {
    "seed": "seed",
    "penalties": "presence_penalty",  # or frequency_penalty
    "logit_bias": "logit_bias",
    "reasoning_effort": "reasoning_effort",
    "json_object": "response_format",
    "json_schema": "response_format",
    "tools": "tools",  # tools defined (and tool turns in the conversation)
    "images": "messages",  # image parts in a turn
    "tools_with_json": "response_format",  # JSON output in a request with tools
    "logprobs": "logprobs",
    "parallel_tool_calls": "parallel_tool_calls",  # false: one call at most
    "dimensions": "dimensions",  # an embedding shortened to some dimensions
    "token_input": "input",  # an embedding of token ids rather than text
}

# What each adapter carries to its API (the rest of FEATURES it cannot: a request
# using it never goes there). Anthropic's JSON output is a forced tool.
_OPENAI = frozenset(FEATURES)
TRANSLATED: dict[str, frozenset[str]] = {
    "openai": _OPENAI,
    "azure": _OPENAI,
    "google": frozenset(
        {
            "seed",
            "penalties",
            "json_object",
            "json_schema",
            "tools",
            "images",
            "dimensions",
            "logprobs",
        }
    ),
    "anthropic": frozenset(
        {"tools", "parallel_tool_calls", "json_object", "json_schema", "images"}
    ),
}

Seed = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
# Token id (as a string, as JSON keys are) -> bias from -100 to 100; up to 300 of them.
LogitBias = Annotated[
    dict[Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,9}$")],
         Annotated[int, msgspec.Meta(ge=-100, le=100)]],
    msgspec.Meta(max_length=300),
]  # fmt: skip
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class JsonSchemaFormat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """OpenAI's ``json_schema``: the schema the answer must follow."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    schema: dict[str, Any] = {}
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``text`` (the default), ``json_object`` (any JSON object) or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def as_openai(self) -> dict[str, Any]:
        """As OpenAI's API takes it (unset fields left out; the schema untouched)."""
        out: dict[str, Any] = {"type": self.type}
        given = self.json_schema
        if given is not None:
            inner: dict[str, Any] = {"name": given.name, "schema": given.schema}
            if given.strict is not None:
                inner["strict"] = given.strict
            if given.description is not None:
                inner["description"] = given.description
            out["json_schema"] = inner
        return out

    def __post_init__(self) -> None:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError(
                "response_format: `json_schema` goes with type json_schema, and only with it"
            )


def features_of(source: Any) -> set[str]:
    """The features a request (or body, or call) uses."""
    used = set()
    if source.embed:
        if source.dimensions is not None:
            used.add("dimensions")
        if any(not isinstance(item, str) for item in source.embed):
            used.add("token_input")
        return used
    if source.seed is not None:
        used.add("seed")
    if source.presence_penalty is not None or source.frequency_penalty is not None:
        used.add("penalties")
    if source.logit_bias:
        used.add("logit_bias")
    if source.reasoning_effort is not None:
        used.add("reasoning_effort")
    form = source.response_format
    if form is not None and form.type != "text":
        used.add(form.type)
    if source.logprobs:
        used.add("logprobs")
    messages = getattr(source, "messages", None)
    if messages and any(m.images for m in messages):
        used.add("images")
    if source.tools:
        used.add("tools")
        if form is not None and form.type != "text":
            used.add("tools_with_json")
        if source.parallel_tool_calls is False:
            used.add("parallel_tool_calls")
    return used
