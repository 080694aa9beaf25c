"""POST /v1/responses with the official OpenAI SDK and LangChain: text, instructions,
multi-turn input, a function tool round trip on every provider, streaming events
(through the SDK's own stream helper), structured output with ``responses.parse``, and
400s naming what is not carried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pydantic
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from langchain_openai import ChatOpenAI

from actors.gateway._responses_api import ResponsesBody, _Echo, _Relay
from actors.messages import GenerateResponse, StreamDelta
from actors.node import Node
from actors.providers import ToolCallDelta, Usage
from actors.providers.simulator import Simulator
from tests.request_path.conftest import MakeNode

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
MODELS = pytest.mark.parametrize(
    ("model", "provider"),
    [("gpt-4o", "openai"), ("gemini-1.5-flash", "google"), ("claude-3-haiku", "anthropic")],
)


class Weather(pydantic.BaseModel):
    city: str
    celsius: float


@pytest.fixture
def client(sdk: tuple[Node, openai.AsyncOpenAI]) -> openai.AsyncOpenAI:
    return sdk[1]


@MODELS
async def test_text_with_instructions(
    client: openai.AsyncOpenAI, simulator: Simulator, model: str, provider: str
) -> None:
    answer = await client.responses.create(
        model=model, input="Say hello", instructions="You answer in one line.",
        max_output_tokens=50,
    )  # fmt: skip
    assert answer.status == "completed" and answer.output_text
    assert answer.id.startswith("resp_") and answer.output[0].type == "message"
    assert answer.usage is not None and answer.usage.output_tokens > 0
    assert answer.model != model or provider != "anthropic"  # the resolved model's name
    sent = simulator.state.last[provider]
    assert "You answer in one line." in sent.texts and "Say hello" in sent.texts
    assert sent.max_tokens == 50


async def test_a_multi_turn_input(client: openai.AsyncOpenAI, simulator: Simulator) -> None:
    answer = await client.responses.create(
        model="gpt-4o",
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "My name is Ada."}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada."}]},
            {"type": "message", "role": "user", "content": "What is my name?"},
        ],
    )
    assert answer.output_text
    assert simulator.state.last["openai"].texts == [
        "Be brief.", "My name is Ada.", "Hello Ada.", "What is my name?"
    ]  # fmt: skip


@MODELS
async def test_a_function_tool_round_trip(
    client: openai.AsyncOpenAI, model: str, provider: str
) -> None:
    first = await client.responses.create(
        model=model, input="What is the weather in Paris?", tools=[WEATHER]
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    call = calls[0]
    assert set(json.loads(call.arguments)) == {"city", "days"}
    second = await client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"c": 21}'},
        ],
    )
    assert second.output_text and not [i for i in second.output if i.type == "function_call"]


@MODELS
async def test_streamed_events_through_the_sdk_helper(
    client: openai.AsyncOpenAI, model: str, provider: str
) -> None:
    kinds: list[str] = []
    text = ""
    async with client.responses.stream(model=model, input="Tell me a story") as stream:
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "response.output_text.done" in kinds
    assert text and final.output_text == text and final.usage is not None


@MODELS
async def test_streamed_function_calls(
    client: openai.AsyncOpenAI, model: str, provider: str
) -> None:
    stream = await client.responses.create(
        model=model, input="What is the weather in Paris?", tools=[WEATHER], stream=True
    )
    arguments, done = "", None
    async for event in stream:
        if event.type == "response.function_call_arguments.delta":
            arguments += event.delta
        elif event.type == "response.completed":
            done = event.response
    assert done is not None
    (call,) = [item for item in done.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.arguments == arguments
    assert set(json.loads(arguments)) == {"city", "days"}


@MODELS
async def test_structured_output_with_parse(
    client: openai.AsyncOpenAI, model: str, provider: str
) -> None:
    answer = await client.responses.parse(
        model=model, input="The weather in Paris, please", text_format=Weather
    )
    assert isinstance(answer.output_parsed, Weather)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0]"),
        ({"model": "no-such-model"}, "model"),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]},
         "tool_choice"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"input": []}, "input"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"max_tool_calls": 0}, "max_tool_calls"),
        ({"reasoning": {"effort": "low"}}, "reasoning.effort"),  # gpt-4o reasons not
        ({"input": [{"role": "user", "content": "hi"},
                    {"type": "function_call_output", "call_id": "c1",
                     "output": [{"type": "input_image", "image_url": "https://x.test/a.png"}]}],
          "tools": [WEATHER]}, "input[1].output"),
    ],
)  # fmt: skip
async def test_what_is_not_carried_is_a_400_naming_it(
    client: openai.AsyncOpenAI, extra: dict[str, Any], param: str
) -> None:
    ask: dict[str, Any] = {"model": "gpt-4o", "input": "Hi"} | extra
    with pytest.raises(openai.APIStatusError) as caught:
        await client.post("/responses", body=ask, cast_to=object)
    assert caught.value.status_code in (400, 404)
    assert isinstance(caught.value.body, dict) and caught.value.body.get("param") == param, (
        caught.value.body
    )


async def test_langchain_sends_gpt_6_with_tools_to_the_responses_api(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    chat = ChatOpenAI(model="gpt-6-luna", api_key="unused",  # type: ignore[arg-type]
                      base_url=f"{node.gateway.url}/v1", max_retries=0)  # fmt: skip
    assert chat._use_responses_api({"tools": [WEATHER]})  # what LangChain decides itself
    answer = await chat.bind_tools([Weather]).ainvoke("What is the weather in Paris?")
    (call,) = answer.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "Weather" and set(call["args"]) == {"city", "celsius"}
    plain = await chat.ainvoke("Hello")
    assert plain.text
    structured = await chat.with_structured_output(Weather).ainvoke("Paris weather")
    assert isinstance(structured, Weather)


async def test_text_then_a_call_then_text_stream_as_three_items() -> None:
    """Anthropic and Gemini may write text, call a tool, and write again: each output
    item has its own id, as the SDK's stream helper requires."""
    body = ResponsesBody(model="claude-3-haiku", input="hi", tools=[])
    echo = _Echo(body, "r1", 0.0)

    async def replies() -> AsyncIterator[Any]:
        yield StreamDelta(
            tool_calls=[
                ToolCallDelta(
                    index=0, id="call_1", name="get_weather", arguments='{"city": "Paris"}'
                )
            ],
            text="",
        )
        yield StreamDelta(text="And more.")
        yield GenerateResponse(request_id="r1", content="", provider="anthropic",
                               model="claude-3-haiku-20240307", finish_reason="tool_calls",
                               usage=Usage(input_tokens=3, output_tokens=4, total_tokens=7),
                               cost_usd=0.0, processing_time_ms=1.0)  # fmt: skip

    async def handler(request: web.Request) -> web.StreamResponse:
        rest = replies()
        return await _Relay(request, echo).run(StreamDelta(text="First."), rest)

    app = web.Application()
    app.router.add_post("/v1/responses", handler)
    async with TestServer(app) as server:
        url = str(server.make_url("/v1"))
        client = openai.AsyncOpenAI(api_key="k", base_url=url, max_retries=0)
        async with client, client.responses.stream(model="claude-3-haiku", input="hi") as stream:
            async for _event in stream:
                pass
            final = await stream.get_final_response()
    kinds = [item.type for item in final.output]
    assert kinds == ["message", "function_call", "message"]
    assert len({item.id for item in final.output}) == 3
    assert final.output_text == "First.And more."
