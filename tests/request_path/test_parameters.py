"""OpenAI's further parameters through /v1 with the official SDK: carried to the
providers that take them, the others left out, a 400 naming the parameter when no
candidate takes it; structured output checked before it is served."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pydantic
import pytest

from actors.node import Node
from actors.providers.simulator import Simulator
from actors.runtime.config import RouterConfig
from tests.conftest import eventually
from tests.limits.conftest import quotas, user
from tests.request_path.conftest import ADMIN, MakeNode

HI = [{"role": "user", "content": "Hi"}]


def _sent(simulator: Simulator, provider: str) -> dict[str, Any]:
    return dict(simulator.state.last[provider].extra["params"])


async def test_openai_parameters_reach_openai_as_sent(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    await client.chat.completions.create(
        model="gpt-4o", messages=HI, seed=7, presence_penalty=0.5, frequency_penalty=-0.5,
        logit_bias={"1734": -100},
    )  # fmt: skip
    sent = _sent(simulator, "openai")
    assert sent["seed"] == 7 and sent["presence_penalty"] == 0.5
    assert sent["frequency_penalty"] == -0.5 and sent["logit_bias"] == {"1734": -100}
    await client.chat.completions.create(model="o3", messages=HI, reasoning_effort="low")
    assert _sent(simulator, "openai")["reasoning_effort"] == "low"


async def test_gemini_gets_them_in_its_own_words(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    await client.chat.completions.create(
        model="gemini-1.5-flash", messages=HI, seed=7, presence_penalty=0.5
    )
    sent = _sent(simulator, "google")
    assert sent["seed"] == 7 and sent["presencePenalty"] == 0.5


async def test_a_parameter_no_candidate_takes_is_a_400_naming_it(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="claude-3-haiku", messages=HI, seed=7)
    assert caught.value.param == "seed", caught.value.body
    assert "anthropic/claude-3-haiku-20240307" in caught.value.message
    assert "anthropic" not in simulator.state.last  # never called
    with pytest.raises(openai.BadRequestError) as caught:  # gpt-4o is no reasoning model
        await client.chat.completions.create(model="gpt-4o", messages=HI, reasoning_effort="low")
    assert caught.value.param == "reasoning_effort"


async def test_a_tier_goes_to_the_candidates_that_take_it(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai", "anthropic", "google"),
                           router=RouterConfig(strategy="round_robin"))  # fmt: skip
    assert node.gateway is not None
    client = openai.AsyncOpenAI(api_key="unused", base_url=f"{node.gateway.url}/v1", max_retries=0)
    for _ in range(4):  # round robin would reach Anthropic; seed keeps it out
        await client.chat.completions.create(model="legacy_fast", messages=HI, seed=1)
    assert simulator.state.calls["anthropic"] == 0
    assert simulator.state.calls["openai"] + simulator.state.calls["google"] == 4
    await client.close()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"metadata": {"k": "v"}}, "metadata"),
        ({"store": True}, "store"),
    ],
)
async def test_what_is_not_carried_yet_is_refused_not_dropped(
    sdk: tuple[Node, openai.AsyncOpenAI], extra: dict[str, Any], param: str
) -> None:
    _node, client = sdk
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=HI, **extra)
    assert caught.value.param == param and "not supported" in caught.value.message


async def test_n_choices_are_n_requests(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    done = await client.chat.completions.create(model="gpt-4o", messages=HI, n=3)
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert all(c.message.content for c in done.choices)
    assert simulator.state.calls["openai"] == 3  # each a call: none from the cache
    assert done.usage is not None and done.usage.prompt_tokens > 0
    one = await client.chat.completions.create(model="gpt-4o", messages=HI, n=1)
    assert done.usage.prompt_tokens == 3 * (one.usage.prompt_tokens if one.usage else 0)
    for extra in ({"n": 2, "stream": True}, {"n": 17}):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HI, **extra)
        assert caught.value.param == "n", caught.value.body
    simulator.state.update("openai", {"error_rate": 1})
    with pytest.raises(openai.APIStatusError) as failed:  # one failure fails them all
        await client.chat.completions.create(
            model="gpt-4o", messages=HI, n=2, extra_headers={"X-Request-ID": "my-request"},
            extra_body={"fallbacks": False},
        )  # fmt: skip
    assert failed.value.response.headers["X-Request-ID"] == "my-request"


async def test_tool_choice_without_tools_is_a_400(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=HI, tool_choice="required")
    assert caught.value.param == "tool_choice"


async def test_defaults_that_ask_for_nothing_pass(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    done = await client.chat.completions.create(
        model="gpt-4o", messages=HI, n=1, store=False, logprobs=False, service_tier="auto",
        extra_body={"parallel_tool_calls": True},
    )  # fmt: skip
    assert done.choices[0].message.content


async def test_an_unknown_field_is_refused_as_openai_refuses_it(
    sdk: tuple[Node, openai.AsyncOpenAI],
) -> None:
    _node, client = sdk
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=HI, extra_body={"top_k": 3})
    assert "top_k" in caught.value.message


class Weather(pydantic.BaseModel):
    city: str
    celsius: float
    sunny: bool
    hours: list[int]


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-1.5-flash", "claude-3-haiku"])
async def test_structured_output_parses(sdk: tuple[Node, openai.AsyncOpenAI], model: str) -> None:
    _node, client = sdk
    done = await client.chat.completions.parse(model=model, messages=HI, response_format=Weather)
    parsed = done.choices[0].message.parsed
    assert isinstance(parsed, Weather) and parsed.hours


@pytest.mark.parametrize("model", ["gemini-1.5-flash", "claude-3-haiku"])
async def test_json_mode(sdk: tuple[Node, openai.AsyncOpenAI], model: str) -> None:
    _node, client = sdk
    done = await client.chat.completions.create(
        model=model, messages=HI, response_format={"type": "json_object"}
    )
    assert done.choices[0].message.content.startswith("{")  # type: ignore[union-attr]
    assert done.choices[0].finish_reason == "stop"


async def test_structured_output_streams_on_anthropic(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    """The forced tool's input comes as input_json_delta pieces: streamed as the text."""
    _node, client = sdk
    stream = await client.chat.completions.create(
        model="claude-3-haiku", messages=HI, stream=True,
        response_format={"type": "json_schema", "json_schema": {
            "name": "w", "schema": Weather.model_json_schema()}},
    )  # fmt: skip
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert Weather.model_validate_json(text)


_THREE_DIGITS = {
    "type": "json_schema",
    "json_schema": {
        "name": "code",
        "schema": {
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[0-9]{3}$"}},
            "required": ["code"],
        },
    },
}


async def test_an_answer_that_breaks_the_schema_is_never_served(
    make_node: MakeNode, simulator: Simulator
) -> None:
    """The simulator ignores `pattern`: its answer breaks the schema, on OpenAI and on
    Azure; each is checked, neither is served, the request fails invalid_output. Both
    answers were made and paid for: the user's quota is charged them."""
    node = await make_node(providers=("openai", "azure"), quota=quotas(daily_token_limit=10**6))
    assert node.gateway is not None
    client = openai.AsyncOpenAI(api_key="unused", base_url=f"{node.gateway.url}/v1", max_retries=0)
    uid = user()
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=HI,
            response_format=_THREE_DIGITS,  # type: ignore[arg-type]
            user=uid,
        )
    assert caught.value.status_code == 502 and caught.value.code == "invalid_output"
    assert "does not match" in caught.value.message
    assert simulator.state.calls["openai"] + simulator.state.calls["azure"] == 2  # both tried

    async def charged() -> dict[str, Any] | None:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{node.gateway.url}/ai-orchestration/quotas/{uid}",
                headers=ADMIN,  # type: ignore[union-attr]
            ) as response,
        ):
            rows = {row["quota_type"]: row for row in (await response.json())["quotas"]}
        return rows if rows["daily_tokens"]["used"] > 0 else None

    rows = await eventually(charged)
    assert rows["monthly_cost"]["used"] > 0 and rows["daily_requests"]["used"] == 1
    await client.close()


async def test_a_schema_that_is_no_schema_is_a_400(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    broken = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o",
            messages=HI,
            response_format=broken,  # type: ignore[arg-type]
        )
    assert caught.value.param == "response_format", caught.value.body


async def test_a_stream_that_breaks_the_schema_ends_in_an_error(
    sdk: tuple[Node, openai.AsyncOpenAI],
) -> None:
    """Its text has gone out when it ends: it ends with an error event, not a clean end."""
    _node, client = sdk
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=HI,
        response_format=_THREE_DIGITS,
        stream=True,  # type: ignore[arg-type]
    )
    with pytest.raises(openai.APIError) as caught:
        async for _chunk in stream:
            pass
    assert "invalid_output" in str(caught.value.code) or "schema" in caught.value.message


_PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.mark.parametrize(
    ("model", "provider", "seen"),
    [
        ("gpt-4o", "openai", [_PIXEL[:40], "https://example.com/cat.png"]),
        ("claude-3-haiku", "anthropic", ["base64", "url"]),
        ("gemini-1.5-flash", "google", ["inlineData", "fileData"]),
    ],
)  # fmt: skip
async def test_images_reach_each_provider_in_its_words(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator, model: str, provider: str,
    seen: list[str],
) -> None:  # fmt: skip
    _node, client = sdk
    parts: list[Any] = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": _PIXEL}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
    ]
    done = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": parts}]
    )
    assert done.choices[0].message.content
    assert simulator.state.last[provider].extra["images"] == seen


async def test_images_are_refused_where_no_candidate_sees(
    sdk: tuple[Node, openai.AsyncOpenAI],
) -> None:
    _node, client = sdk
    parts: list[Any] = [{"type": "text", "text": "?"},
                        {"type": "image_url", "image_url": {"url": _PIXEL}}]  # fmt: skip
    with pytest.raises(openai.BadRequestError) as caught:  # gpt-4 has no vision
        await client.chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": parts}]
        )
    assert caught.value.param == "messages"
    bad: list[Any] = [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": bad}]
        )
    assert "data URI" in caught.value.message


async def test_an_image_only_turn_sends_no_empty_text(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    """Anthropic refuses an empty text block (the simulator too)."""
    _node, client = sdk
    parts: list[Any] = [{"type": "image_url", "image_url": {"url": _PIXEL}}]
    done = await client.chat.completions.create(
        model="claude-3-haiku", messages=[{"role": "user", "content": parts}]
    )
    assert done.choices[0].message.content
    assert simulator.state.last["anthropic"].extra["images"] == ["base64"]


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.0-flash"])
async def test_logprobs_come_back_plain_and_streamed(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator, model: str
) -> None:
    _node, client = sdk
    done = await client.chat.completions.create(
        model=model, messages=HI, logprobs=True, top_logprobs=2
    )
    scores = done.choices[0].logprobs
    assert scores is not None and scores.content
    assert "".join(t.token for t in scores.content) == done.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 for t in scores.content)
    stream = await client.chat.completions.create(
        model=model, messages=HI, logprobs=True, stream=True
    )
    text, tokens = "", ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            for token in (
                (chunk.choices[0].logprobs.content or []) if chunk.choices[0].logprobs else []
            ):
                tokens += token.token
    assert text and tokens == text
    # Not from the cache (a cached answer has none), not to a model without them.
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="claude-3-haiku", messages=HI, logprobs=True)
    assert caught.value.param == "logprobs"
    with pytest.raises(openai.BadRequestError) as caught:  # not known to have them
        await client.chat.completions.create(model="gemini-2.5-flash", messages=HI, logprobs=True)
    assert caught.value.param == "logprobs"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=HI, top_logprobs=2)
    assert "top_logprobs" in caught.value.message
