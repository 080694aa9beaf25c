"""LangChain's ChatOpenAI, unchanged, against the gateway: tools with bind_tools, and
with_structured_output in its default mode (a JSON Schema response_format)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pydantic
import pytest
from langchain_openai import ChatOpenAI

from actors.node import Node
from tests.request_path.conftest import MakeNode


class Weather(pydantic.BaseModel):
    """The weather in a city."""

    city: str
    celsius: float


@pytest.fixture
async def gateway(make_node: MakeNode) -> AsyncIterator[Node]:
    node = await make_node(providers=("openai", "google", "anthropic"))
    assert node.gateway is not None
    yield node


def _chat(node: Node, model: str) -> ChatOpenAI:
    assert node.gateway is not None
    return ChatOpenAI(model=model, api_key="unused",  # type: ignore[arg-type]
                      base_url=f"{node.gateway.url}/v1", max_retries=0)  # fmt: skip


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-1.5-flash", "claude-3-haiku"])
async def test_bind_tools_gets_tool_calls(gateway: Node, model: str) -> None:
    chat = _chat(gateway, model).bind_tools([Weather])
    answer = await chat.ainvoke("What is the weather in Paris?")
    (call,) = answer.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "Weather" and set(call["args"]) == {"city", "celsius"}


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-1.5-flash", "claude-3-haiku"])
async def test_with_structured_output(gateway: Node, model: str) -> None:
    structured = _chat(gateway, model).with_structured_output(Weather)
    found = await structured.ainvoke("What is the weather in Paris?")
    assert isinstance(found, Weather)
