"""The official openai SDK, unchanged, against the gateway's /v1/chat/completions."""

from __future__ import annotations

import openai
import pytest

from actors.node import Node
from actors.providers.simulator import Simulator


async def test_non_streaming(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    completion = await client.chat.completions.create(
        model="claude-3-haiku",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=50,
        user="user-7",
    )
    assert completion.object == "chat.completion"
    assert completion.model == "claude-3-haiku-20240307"
    assert completion.choices[0].message.content.startswith("Simulated answer")  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage is not None and completion.usage.total_tokens > 0


@pytest.mark.parametrize("model", ["fast", "google/gemini-1.5-flash", "gpt-4o", "gemini-pro"])
async def test_any_catalog_name_works(sdk: tuple[Node, openai.AsyncOpenAI], model: str) -> None:
    _node, client = sdk
    completion = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}]
    )
    assert completion.choices[0].message.content


async def test_streaming_with_usage(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Tell me something."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text.startswith("Simulated answer")
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Tell me something."}]
    )
    assert whole.choices[0].message.content == text


async def test_streaming_fails_over_before_the_first_token(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    simulator.state.update("openai", {"error_rate": 1})
    simulator.state.update("anthropic", {"error_rate": 1})
    for _ in range(3):  # whichever provider round robin starts on
        stream = await client.chat.completions.create(
            model="balanced", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text.startswith("Simulated answer")


async def test_a_stream_cut_after_the_first_token_ends_in_an_error(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    simulator.state.update("google", {"cut_rate": 1, "chunk_delay_ms": 2})
    stream = await client.chat.completions.create(
        model="google/gemini-1.5-flash", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk)
    assert "stream_interrupted" in str(caught.value.code) or "google" in caught.value.message
    assert received  # text had arrived before the break
    assert not any(c.choices and c.choices[0].finish_reason for c in received)


async def test_errors_come_back_in_openai_shape(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    _node, client = sdk
    with pytest.raises(openai.NotFoundError) as missing:  # as OpenAI answers it
        await client.chat.completions.create(
            model="nope-9", messages=[{"role": "user", "content": "Hi"}]
        )
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], temperature=5
        )
    assert bad.value.param == "temperature", bad.value.body
    for provider in ("openai", "anthropic", "google"):
        simulator.state.update(provider, {"error_rate": 1})
    with pytest.raises(openai.InternalServerError) as down:
        await client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    assert down.value.status_code == 503


async def test_models_list(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    models = {m.id async for m in client.models.list()}
    assert {"gpt-4o", "claude-3-haiku-20240307", "gemini-1.5-flash", "fast", "smart"} <= models


async def test_too_long_for_every_candidate_is_a_400_not_retried(
    sdk: tuple[Node, openai.AsyncOpenAI], simulator: Simulator
) -> None:
    """The provider's own "too long" comes back as OpenAI's context_length_exceeded, and
    no other candidate with a window no larger is called (the SDK would not retry)."""
    _node, client = sdk
    simulator.state.update("openai", {"context_window": 50})
    long = "word " * 60  # within gpt-4o's window as the gateway estimates, over the knob
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": long}], max_tokens=10,
            extra_body={"fallbacks": False},  # its chain has larger windows
        )  # fmt: skip
    assert caught.value.code == "context_length_exceeded", caught.value.body
    assert "context" in caught.value.message
    assert simulator.state.calls["openai"] == 1  # not retried, not sent elsewhere


async def test_every_streamed_chunk_names_the_model_answering(
    sdk: tuple[Node, openai.AsyncOpenAI],
) -> None:
    _node, client = sdk
    stream = await client.chat.completions.create(
        model="google/gemini-1.5-flash",
        messages=[{"role": "user", "content": "Tell me something."}],
        stream=True,
    )
    models = {chunk.model async for chunk in stream}
    assert models == {"gemini-1.5-flash"}, models


async def test_one_model_by_id(sdk: tuple[Node, openai.AsyncOpenAI]) -> None:
    _node, client = sdk
    dated = await client.models.retrieve("claude-3-haiku-20240307")
    assert dated.owned_by == "anthropic" and dated.created == 1709769600  # 2024-03-07
    alias = await client.models.retrieve("claude-3-haiku")
    assert alias.owned_by == "aio" and alias.created == 1709769600
    assert (await client.models.retrieve("fast")).id == "fast"
    dated_alias = await client.models.retrieve("gpt-4o")  # its alias gpt-4o-2024-08-06
    assert dated_alias.created == 1722902400
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-99")
