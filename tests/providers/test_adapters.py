"""Each adapter, through its official SDK, against the simulator's wire formats."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.providers import (
    AuthenticationFailed,
    BadRequest,
    Catalog,
    CatalogData,
    ChatMessage,
    ContentFiltered,
    ContextTooLong,
    ProviderRequest,
    ProviderTimeout,
    RateLimited,
    ServerError,
    Unavailable,
)
from actors.providers.simulator import BLOCKED_MARKER, UNKNOWN_MODEL_MARKER, Simulator
from tests.providers.conftest import KEYS, MODELS, MakeAdapter

PROVIDERS = ["openai", "azure", "anthropic", "google"]
parametrize = pytest.mark.parametrize("name", PROVIDERS)

CONVERSATION = ProviderRequest(
    messages=[
        ChatMessage(role="system", content="You answer in one sentence."),
        ChatMessage(role="user", content="What is a circuit breaker?"),
        ChatMessage(role="assistant", content="A switch that opens on faults."),
        ChatMessage(role="user", content="And in software?"),
    ],
    max_tokens=200,
    temperature=0.3,
    top_p=0.9,
    stop=["END"],
    user="user-1",
)


@parametrize
async def test_plain_prompt(name: str, make_adapter: MakeAdapter) -> None:
    adapter = await make_adapter(name)
    completion = await adapter.generate(ProviderRequest(prompt="Say hello."))
    assert completion.content.startswith("Simulated answer:")
    assert completion.finish_reason == "stop"
    assert completion.provider == name
    assert completion.model == MODELS[name]
    usage = completion.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert completion.latency_ms > 0


@parametrize
async def test_messages_with_a_system_prompt(
    name: str, make_adapter: MakeAdapter, simulator: Simulator
) -> None:
    adapter = await make_adapter(name)
    completion = await adapter.generate(CONVERSATION)
    call = simulator.state.last[name]
    # The system prompt reached the provider where its API wants it (Anthropic's
    # system field, Gemini's systemInstruction: the simulator refuses a system role
    # among their messages) and every turn followed, in order.
    assert call.texts == [m.content for m in CONVERSATION.messages]
    assert call.max_tokens == 200
    assert completion.content


@parametrize
async def test_usage_and_cost(name: str, make_adapter: MakeAdapter) -> None:
    adapter = await make_adapter(name)
    completion = await adapter.generate(CONVERSATION)
    info = Catalog().get(MODELS[name])
    expected = (
        completion.usage.input_tokens * info.input_per_mtok
        + completion.usage.output_tokens * info.output_per_mtok
    ) / 1e6
    assert completion.cost_usd == pytest.approx(expected)
    assert completion.cost_usd > 0


async def test_anthropic_always_sends_max_tokens(
    make_adapter: MakeAdapter, simulator: Simulator
) -> None:
    adapter = await make_adapter("anthropic")
    await adapter.generate(ProviderRequest(prompt="hi"))
    assert (
        simulator.state.last["anthropic"].max_tokens
        == Catalog().get("claude-3-haiku").max_output_tokens
    )


async def test_azure_uses_the_deployment_of_the_model(
    make_adapter: MakeAdapter, simulator: Simulator
) -> None:
    adapter = await make_adapter("azure", deployments={"gpt-4.1": "my-41"})
    await adapter.generate(ProviderRequest(prompt="hi"))
    assert simulator.state.last["azure"].model == "gpt4o-deployment"
    await adapter.generate(ProviderRequest(prompt="hi", model="gpt-4.1"))
    assert simulator.state.last["azure"].model == "my-41"
    with pytest.raises(BadRequest, match="no Azure deployment serves model 'gpt-5'"):
        await adapter.generate(ProviderRequest(prompt="hi", model="gpt-5"))


@parametrize
async def test_streaming_ends_with_usage(name: str, make_adapter: MakeAdapter) -> None:
    adapter = await make_adapter(name)
    whole = await adapter.generate(CONVERSATION)
    chunks = [chunk async for chunk in adapter.stream(CONVERSATION)]
    *deltas, final = chunks
    assert all(c.delta and c.finish_reason is None for c in deltas)
    assert len(deltas) > 3
    assert "".join(c.delta for c in deltas) == whole.content
    assert final.final and final.delta == ""
    assert final.finish_reason == whole.finish_reason
    assert final.usage == whole.usage
    assert final.cost_usd == pytest.approx(whole.cost_usd)


@parametrize
async def test_max_tokens_cuts_with_finish_length(name: str, make_adapter: MakeAdapter) -> None:
    adapter = await make_adapter(name)
    completion = await adapter.generate(
        ProviderRequest(prompt="Tell me a long story.", max_tokens=3)
    )
    assert completion.finish_reason == "length"
    assert completion.usage.output_tokens <= 3


@parametrize
async def test_429_with_retry_after(
    name: str, make_adapter: MakeAdapter, simulator: Simulator
) -> None:
    simulator.state.update(name, {"rate_limit_rate": 1, "retry_after_s": 7})
    adapter = await make_adapter(name)
    with pytest.raises(RateLimited) as caught:
        await adapter.generate(ProviderRequest(prompt="hi"))
    assert caught.value.retry_after == 7
    assert caught.value.status == 429
    assert caught.value.retryable and caught.value.counts_for_breaker
    assert simulator.state.calls[name] == 1  # the SDK did not retry


@parametrize
async def test_server_errors(name: str, make_adapter: MakeAdapter, simulator: Simulator) -> None:
    simulator.state.update(name, {"error_rate": 1})
    adapter = await make_adapter(name)
    statuses = set()
    for _ in range(6):
        with pytest.raises(ServerError) as caught:
            await adapter.generate(ProviderRequest(prompt="hi"))
        statuses.add(caught.value.status)
    assert statuses <= {500, 503} and statuses
    assert simulator.state.calls[name] == 6  # one request each: no SDK retries


@parametrize
async def test_authentication_failure_never_shows_the_key(
    name: str, make_adapter: MakeAdapter, simulator: Simulator
) -> None:
    simulator.state.update(name, {"auth_failure": True})
    adapter = await make_adapter(name)
    with pytest.raises(AuthenticationFailed) as caught:
        await adapter.generate(ProviderRequest(prompt="hi"))
    assert caught.value.status == 401
    assert not caught.value.retryable and not caught.value.counts_for_breaker
    assert KEYS[name] not in str(caught.value)
    assert KEYS[name] not in caught.value.message
    assert "***" in str(caught.value)  # the simulator echoed it, as real APIs do


@parametrize
async def test_a_hang_times_out_within_the_configured_time(
    name: str, make_adapter: MakeAdapter, simulator: Simulator
) -> None:
    simulator.state.update(name, {"hang_rate": 1})
    adapter = await make_adapter(name, timeout_ms=400)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await asyncio.wait_for(adapter.generate(ProviderRequest(prompt="hi")), 10)
    elapsed = time.monotonic() - started
    # Not before the configured 0.4 s; and after it, by far less than any SDK's own
    # default (a minute or more), with room for a slow or busy machine.
    assert 0.35 < elapsed < 5.0, elapsed
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        await asyncio.wait_for(_drain(adapter.stream(ProviderRequest(prompt="hi"))), 10)
    assert time.monotonic() - started < 5.0


@parametrize
@pytest.mark.parametrize("mode", ["abort", "clean"])
async def test_a_cut_stream_raises_and_never_ends_as_complete(
    name: str, mode: str, make_adapter: MakeAdapter, simulator: Simulator
) -> None:
    simulator.state.update(name, {"cut_rate": 1, "cut_mode": mode})
    adapter = await make_adapter(name)
    received = []
    with pytest.raises(Unavailable):
        async for chunk in adapter.stream(CONVERSATION):
            received.append(chunk)
    assert not any(chunk.final for chunk in received)


@parametrize
async def test_context_too_long(name: str, make_adapter: MakeAdapter, simulator: Simulator) -> None:
    simulator.state.update(name, {"context_window": 50})
    adapter = await make_adapter(name)
    with pytest.raises(ContextTooLong) as caught:
        await adapter.generate(ProviderRequest(prompt="word " * 200))
    assert caught.value.status == 400
    assert isinstance(caught.value, BadRequest)
    assert not caught.value.retryable and not caught.value.counts_for_breaker


@parametrize
async def test_content_filtered(name: str, make_adapter: MakeAdapter) -> None:
    adapter = await make_adapter(name)
    with pytest.raises(ContentFiltered):
        await adapter.generate(ProviderRequest(prompt=f"something {BLOCKED_MARKER}"))


@pytest.mark.parametrize("name", ["openai", "anthropic", "google"])
async def test_unknown_model_is_a_bad_request(name: str, make_adapter: MakeAdapter) -> None:
    adapter = await make_adapter(name)
    with pytest.raises(BadRequest) as caught:
        await adapter.generate(ProviderRequest(prompt="hi", model=f"x-{UNKNOWN_MODEL_MARKER}"))
    assert caught.value.status == 404


@parametrize
async def test_connection_refused_is_unavailable(
    name: str, make_adapter: MakeAdapter, unused_tcp_port: int
) -> None:
    adapter = await make_adapter(name, base=f"http://127.0.0.1:{unused_tcp_port}")
    with pytest.raises(Unavailable) as caught:
        await asyncio.wait_for(adapter.generate(ProviderRequest(prompt="hi")), 10)
    assert caught.value.retryable and caught.value.counts_for_breaker
    probe = await adapter.probe()
    assert not probe.ok and probe.detail.startswith("unavailable")


@parametrize
async def test_probe(name: str, make_adapter: MakeAdapter, simulator: Simulator) -> None:
    adapter = await make_adapter(name)
    result = await adapter.probe()
    assert result.ok and result.provider == name and result.latency_ms > 0
    simulator.state.update(name, {"error_rate": 1})
    failed = await adapter.probe()
    assert not failed.ok and failed.detail.startswith("server_error")


async def _drain(stream: object) -> None:
    async for _ in stream:  # type: ignore[attr-defined]
        pass


async def test_a_parameter_an_adapter_does_not_carry_is_refused_not_dropped(
    make_adapter: MakeAdapter, simulator: Simulator
) -> None:
    adapter = await make_adapter("anthropic")
    with pytest.raises(BadRequest) as caught:
        await adapter.generate(ProviderRequest(prompt="hi", seed=3))
    assert "seed" in str(caught.value)
    with pytest.raises(BadRequest):
        async for _chunk in adapter.stream(ProviderRequest(prompt="hi", presence_penalty=1.0)):
            pass
    assert simulator.state.calls["anthropic"] == 0


def test_the_catalog_refuses_a_feature_it_does_not_know() -> None:
    bad = CatalogData(features={"openai": ["seed", "telepathy"]})
    with pytest.raises(ValueError, match="telepathy"):
        Catalog(overrides=bad)
