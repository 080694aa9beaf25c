"""The official anthropic SDK, unchanged, against the gateway's /v1/messages: plain and
streamed answers, a tool round trip, token counting and errors; routed to any
provider like any request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from actors.node import Node
from tests.request_path.conftest import MakeNode

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
async def sdk(make_node: MakeNode) -> AsyncIterator[anthropic.AsyncAnthropic]:
    node: Node = await make_node(providers=("openai", "anthropic", "google"))
    assert node.gateway is not None
    client = anthropic.AsyncAnthropic(api_key="unused", base_url=node.gateway.url, max_retries=0)
    yield client
    await client.close()


@pytest.mark.parametrize("model", ["claude-3-haiku", "gpt-4o", "gemini-1.5-flash"])
async def test_messages_create_on_any_provider(sdk: anthropic.AsyncAnthropic, model: str) -> None:
    message = await sdk.messages.create(
        model=model, max_tokens=100, system="Be brief.", messages=ASK
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-3-haiku", "gpt-4o"])
async def test_messages_stream(sdk: anthropic.AsyncAnthropic, model: str) -> None:
    async with sdk.messages.stream(model=model, max_tokens=100, messages=ASK) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text and final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason in ("end_turn", "max_tokens")


@pytest.mark.parametrize("model", ["claude-3-haiku", "gpt-4o", "gemini-1.5-flash"])
async def test_a_tool_round_trip(sdk: anthropic.AsyncAnthropic, model: str) -> None:
    first = await sdk.messages.create(
        model=model,
        max_tokens=100,
        messages=ASK,
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and "city" in use.input  # type: ignore[operator]
    second = await sdk.messages.create(
        model=model, max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
        messages=[*ASK, {"role": "assistant", "content": first.content},  # type: ignore[list-item]
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                "content": "21 degrees"}]}],
    )  # fmt: skip
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"


async def test_a_streamed_tool_call(sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(
        model="gpt-4o",
        max_tokens=100,
        messages=ASK,
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_message()
    (use,) = [b for b in final.content if b.type == "tool_use"]
    assert use.name == "get_weather" and "city" in use.input  # type: ignore[operator]
    assert final.stop_reason == "tool_use"


async def test_count_tokens_and_errors(sdk: anthropic.AsyncAnthropic) -> None:
    counted = await sdk.messages.count_tokens(model="claude-3-haiku", messages=ASK)
    assert counted.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        await sdk.messages.create(model="claude-99", max_tokens=10, messages=ASK)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await sdk.messages.create(
            model="claude-3-haiku", max_tokens=10, messages=ASK, extra_body={"top_k": 3}
        )
    assert "top_k" in caught.value.message


async def test_refusals_before_the_route_are_anthropic_shaped(
    make_node: MakeNode, http: Any
) -> None:
    node = await make_node(providers=("anthropic",))
    assert node.gateway is not None
    async with http.get(f"{node.gateway.url}/v1/messages") as response:
        body = await response.json()
    assert response.status == 405 and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error" and "GET" in body["error"]["message"]


async def test_prompt_caching_hints_on_tools_are_taken(sdk: anthropic.AsyncAnthropic) -> None:
    cached = {**WEATHER, "cache_control": {"type": "ephemeral"}}
    message = await sdk.messages.create(
        model="claude-3-haiku",
        max_tokens=50,
        messages=ASK,
        tools=[cached],  # type: ignore[list-item]
    )
    assert message.stop_reason == "tool_use"
