"""Tools through /v1 with the official OpenAI SDK (and LangChain): calls, a full round
trip, streamed call deltas, parallel calls, the legacy functions; providers whose
adapter does not carry tools yet are left out, or the request is a 400 naming them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from actors.node import Node
from actors.providers.simulator import Simulator
from actors.runtime.config import RouterConfig
from tests.request_path.conftest import MakeNode

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
async def sdk(make_node: MakeNode) -> AsyncIterator[tuple[Node, openai.AsyncOpenAI]]:
    node = await make_node(providers=("openai", "anthropic", "google"),
                           router=RouterConfig(strategy="round_robin"))  # fmt: skip
    assert node.gateway is not None
    client = openai.AsyncOpenAI(api_key="unused", base_url=f"{node.gateway.url}/v1", max_retries=0)
    yield node, client
    await client.close()


async def test_a_full_tool_round_trip(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    first = await client.chat.completions.create(
        model="gpt-4o",
        messages=ASK,
        tools=[WEATHER],  # type: ignore[list-item]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert set(arguments) == {"city", "days"}
    sent = simulator.state.last["openai"]
    conversation: list[Any] = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'},
    ]
    second = await client.chat.completions.create(
        model="gpt-4o",
        messages=conversation,
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content
    assert sent is not simulator.state.last["openai"]


async def test_parallel_calls_and_a_named_choice(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    both = await client.chat.completions.create(
        model="gpt-4o",
        messages=ASK,
        tools=[WEATHER, TIME],  # type: ignore[list-item]
    )
    names = [c.function.name for c in both.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    assert names == ["get_weather", "get_time"]
    one = await client.chat.completions.create(
        model="gpt-4o", messages=ASK, tools=[WEATHER, TIME],  # type: ignore[list-item]
        parallel_tool_calls=False,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )  # fmt: skip
    names = [c.function.name for c in one.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    assert names == ["get_time"]


async def test_streamed_tool_call_deltas(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=ASK,
        tools=[WEATHER],
        stream=True,  # type: ignore[list-item]
    )
    ids, names, arguments, finish = set(), set(), "", None
    async for chunk in stream:
        if not chunk.choices:
            continue
        for piece in chunk.choices[0].delta.tool_calls or []:
            if piece.id:
                ids.add(piece.id)
            if piece.function and piece.function.name:
                names.add(piece.function.name)
            if piece.function and piece.function.arguments:
                arguments += piece.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert len(ids) == 1 and names == {"get_weather"} and finish == "tool_calls"
    assert set(json.loads(arguments)) == {"city", "days"}


async def test_the_legacy_functions_are_tools(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    done = await client.chat.completions.create(
        model="gpt-4o",
        messages=ASK,
        functions=[WEATHER["function"]],  # type: ignore[list-item]
    )
    message = done.choices[0].message
    assert done.choices[0].finish_reason == "function_call"
    assert message.function_call is not None and message.function_call.name == "get_weather"


async def test_providers_without_tools_yet_are_left_out(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    for _ in range(3):  # round robin over legacy_fast: only OpenAI carries tools yet
        await client.chat.completions.create(
            model="legacy_fast",
            messages=ASK,
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assert simulator.state.calls["anthropic"] == simulator.state.calls["google"] == 0
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="claude-3-haiku",
            messages=ASK,
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assert caught.value.param == "tools"


async def test_a_tool_turn_without_tools_is_a_400(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=[*ASK, {"role": "tool", "tool_call_id": "c1", "content": "x"}],  # type: ignore[list-item]
        )
    assert "tools" in caught.value.message
