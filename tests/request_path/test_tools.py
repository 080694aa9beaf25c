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
from actors.providers import ToolCallDelta
from actors.providers.simulator import Simulator
from actors.routing.breaker import _merged
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


MODELS = pytest.mark.parametrize(
    ("model", "provider"),
    [("gpt-4o", "openai"), ("gemini-1.5-flash", "google"), ("claude-3-haiku", "anthropic")],
)
Sdk = tuple[Node, openai.AsyncOpenAI]


async def _ask(client: openai.AsyncOpenAI, **kw: Any) -> Any:
    return await client.chat.completions.create(**kw)


@MODELS
async def test_a_full_tool_round_trip(
    sdk: Sdk, simulator: Simulator, model: str, provider: str
) -> None:
    _node, client = sdk
    first = await _ask(client, model=model, messages=ASK, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city", "days"}
    sent = simulator.state.last[provider]
    conversation: list[Any] = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'},
    ]
    second = await _ask(client, model=model, messages=conversation, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content
    assert sent is not simulator.state.last[provider]


@MODELS
async def test_parallel_calls_and_a_named_choice(sdk: Sdk, model: str, provider: str) -> None:
    _node, client = sdk
    both = await _ask(client, model=model, messages=ASK, tools=[WEATHER, TIME])
    names = [c.function.name for c in both.choices[0].message.tool_calls or []]
    assert names == ["get_weather", "get_time"]
    named = {"type": "function", "function": {"name": "get_time"}}
    one = await _ask(client, model=model, messages=ASK, tools=[WEATHER, TIME], tool_choice=named)
    assert [c.function.name for c in one.choices[0].message.tool_calls or []] == ["get_time"]


async def test_parallel_tool_calls_false_is_honoured(sdk: Sdk) -> None:
    """OpenAI's switch (Anthropic's disable_parallel_tool_use): Gemini has none, so it
    is left out of a request that sets it."""
    _node, client = sdk
    for model in ("gpt-4o", "claude-3-haiku"):
        one = await _ask(client, model=model, messages=ASK, tools=[WEATHER, TIME],
                         parallel_tool_calls=False)  # fmt: skip
        assert len(one.choices[0].message.tool_calls or []) == 1, model
    with pytest.raises(openai.BadRequestError) as caught:
        await _ask(client, model="gemini-1.5-flash", messages=ASK, tools=[WEATHER, TIME],
                   parallel_tool_calls=False)  # fmt: skip
    assert caught.value.param == "parallel_tool_calls"


@MODELS
async def test_streamed_tool_call_deltas(sdk: Sdk, model: str, provider: str) -> None:
    _node, client = sdk
    stream = await _ask(client, model=model, messages=ASK, tools=[WEATHER], stream=True)
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


async def test_the_legacy_functions_are_tools(sdk: Sdk) -> None:
    _node, client = sdk
    done = await _ask(client, model="gpt-4o", messages=ASK, functions=[WEATHER["function"]])
    message = done.choices[0].message
    assert done.choices[0].finish_reason == "function_call"
    assert message.function_call is not None and message.function_call.name == "get_weather"


async def test_a_tier_with_tools_reaches_every_provider(sdk: Sdk, simulator: Simulator) -> None:
    _node, client = sdk
    for _ in range(3):  # round robin over legacy_fast: each provider carries tools
        await _ask(client, model="legacy_fast", messages=ASK, tools=[WEATHER])
    assert simulator.state.calls["openai"] == simulator.state.calls["anthropic"] == 1
    assert simulator.state.calls["google"] == 1


async def test_a_tool_turn_without_tools_is_a_400(sdk: Sdk) -> None:
    _node, client = sdk
    turns = [*ASK, {"role": "tool", "tool_call_id": "c1", "content": "x"}]
    with pytest.raises(openai.BadRequestError) as caught:
        await _ask(client, model="gpt-4o", messages=turns)
    assert "tools" in caught.value.message


async def test_gemini_3_signatures_travel_in_the_call_id(sdk: Sdk) -> None:
    """Gemini 3 signs its calls and refuses a replay without the signature: it comes
    back in the call's id; a call made by another model gets Google's sentinel."""
    _node, client = sdk
    first = await _ask(client, model="gemini-3.1-flash-lite", messages=ASK, tools=[WEATHER])
    (call,) = first.choices[0].message.tool_calls
    assert ".sig." in call.id
    result = {"role": "tool", "tool_call_id": call.id, "content": "21"}
    again = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
             result]  # fmt: skip
    second = await _ask(client, model="gemini-3.1-flash-lite", messages=again, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    other = await _ask(client, model="gpt-4o", messages=ASK, tools=[WEATHER])  # unsigned
    (made,) = other.choices[0].message.tool_calls
    moved = [*ASK, {"role": "assistant", "content": None, "tool_calls": [made.model_dump()]},
             {"role": "tool", "tool_call_id": made.id, "content": "21"}]  # fmt: skip
    third = await _ask(client, model="gemini-3.1-flash-lite", messages=moved, tools=[WEATHER])
    assert third.choices[0].finish_reason == "stop"


async def test_a_gemini_conversation_moves_to_other_providers(sdk: Sdk) -> None:
    """A signed Gemini call id is longer than OpenAI takes and has characters Anthropic
    does not: each adapter sends a portable id, the same for the call and its result."""
    _node, client = sdk
    first = await _ask(client, model="gemini-3.1-flash-lite", messages=ASK, tools=[WEATHER])
    (call,) = first.choices[0].message.tool_calls
    assert ".sig." in call.id
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id, "content": "21"}]  # fmt: skip
    for model in ("gpt-4o", "claude-3-haiku"):
        done = await _ask(client, model=model, messages=history, tools=[WEATHER])
        assert done.choices[0].finish_reason == "stop", model


async def test_legacy_functions_answer_one_function_call(sdk: Sdk) -> None:
    _node, client = sdk
    done = await _ask(client, model="gpt-4o", messages=ASK, functions=[WEATHER["function"],
                      TIME["function"]])  # fmt: skip
    message = done.choices[0].message
    assert message.function_call is not None and not message.tool_calls
    called = message.function_call
    echoed = [*ASK, {"role": "assistant", "content": None, "function_call": called.model_dump()},
              {"role": "function", "name": called.name, "content": "21"}]  # fmt: skip
    again = await _ask(client, model="gpt-4o", messages=echoed, functions=[WEATHER["function"]])
    assert again.choices[0].finish_reason == "stop"
    stream = await _ask(client, model="gpt-4o", messages=ASK, functions=[WEATHER["function"]],
                        stream=True)  # fmt: skip
    name, arguments, finish = "", "", None
    async for chunk in stream:
        if chunk.choices:
            function = chunk.choices[0].delta.function_call
            if function is not None:
                name += function.name or ""
                arguments += function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and json.loads(arguments) and finish == "function_call"


async def test_json_output_with_tools_goes_to_openai_only(sdk: Sdk) -> None:
    _node, client = sdk
    form = {"type": "json_object"}
    with pytest.raises(openai.BadRequestError) as caught:
        await _ask(client, model="claude-3-haiku", messages=ASK, tools=[WEATHER],
                   response_format=form)  # fmt: skip
    assert caught.value.param == "response_format"
    done = await _ask(client, model="gpt-4o", messages=ASK, tools=[WEATHER], response_format=form)
    assert done.choices[0].finish_reason == "tool_calls"


def test_pieces_gathered_during_a_send_merge_per_call() -> None:
    pieces = [
        ToolCallDelta(index=0, id="c0", name="f"),
        ToolCallDelta(index=0, arguments='{"a'),
        ToolCallDelta(index=0, arguments='": 1}'),
        ToolCallDelta(index=1, id="c1", name="g"),
    ]
    merged = _merged(pieces)
    assert [(p.index, p.id, p.name, p.arguments) for p in merged] == [
        (0, "c0", "f", '{"a": 1}'),
        (1, "c1", "g", ""),
    ]
