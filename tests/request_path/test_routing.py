"""The router: strategies, fallback chains, retries, deadlines (over HTTP and the bus)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiohttp
import pytest

from actors.client import Client, DeadlineExceeded, GenerateRequest, NoProviderAvailable
from actors.messages import RequestCompleted
from actors.providers import Catalog, estimate_prompt_tokens
from actors.providers.simulator import Simulator
from actors.routing import LatencyView
from actors.runtime.config import RouterConfig
from tests.conftest import eventually
from tests.request_path.conftest import MakeNode


async def _generate(http: aiohttp.ClientSession, url: str, **body: Any) -> tuple[int, Any]:
    async with http.post(f"{url}/ai-orchestration/generate", json=body) as response:
        return response.status, await response.json()


async def test_cost_picks_the_cheapest_candidate_that_fits(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(router=RouterConfig(strategy="cost"))
    assert node.gateway is not None
    catalog = Catalog()
    prompt = "Summarize the plot of a short story in two sentences."
    tokens = estimate_prompt_tokens([prompt])
    fast = [m for _p, m in catalog.resolve("legacy_fast")]
    cheapest = min(fast, key=lambda m: catalog.get(m).cost(tokens, 100))
    status, body = await _generate(http, node.gateway.url, prompt=prompt, model="legacy_fast",
                                   max_tokens=100)  # fmt: skip
    assert status == 200
    assert body["response"]["model"] == cheapest
    # A window too small for the prompt rules a candidate out before any call.
    long_prompt = "word " * 10_000  # over 10k tokens: more than gpt-4's 8k window
    status, body = await _generate(http, node.gateway.url, prompt=long_prompt, model="gpt-4",
                                   strategy="cost")  # fmt: skip
    assert status == 400 and body["error"]["type"] == "context_too_long"  # never retried
    assert body["error"]["attempts"][0]["outcome"] == "context_too_long"


async def test_round_robin_takes_turns(make_node: MakeNode, http: aiohttp.ClientSession) -> None:
    node = await make_node(router=RouterConfig(strategy="round_robin"))
    assert node.gateway is not None
    chosen = []
    for n in range(6):
        status, body = await _generate(http, node.gateway.url, prompt=f"hi {n}")
        assert status == 200
        chosen.append(body["response"]["provider"])
    assert chosen[:3] != chosen[1:4]
    assert collections.Counter(chosen) == {"openai": 2, "anthropic": 2, "google": 2}


async def test_weighted_follows_the_weights(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    weights = {"openai": 8, "anthropic": 1, "google": 0}
    node = await make_node(router=RouterConfig(strategy="weighted", weights=weights))
    assert node.gateway is not None
    chosen = collections.Counter()
    for n in range(90):
        _status, body = await _generate(http, node.gateway.url, prompt=f"q{n}")
        chosen[body["response"]["provider"]] += 1
    assert chosen["google"] == 0  # weight 0: only ever a last resort
    assert chosen["openai"] > 3 * chosen["anthropic"] > 0


async def test_performance_prefers_the_fastest(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    # Gaps far wider than what a slow or busy machine adds to a call (anthropic: 0 ms).
    simulator.state.update("openai", {"latency_ms": 1_000})
    simulator.state.update("google", {"latency_ms": 500})
    node = await make_node(router=RouterConfig(strategy="performance"))
    assert node.gateway is not None
    # Each provider answers once (untried ones are tried first), then the fastest wins.
    for n in range(3):
        await _generate(http, node.gateway.url, prompt=f"warm {n}", strategy="round_robin")
    await eventually(lambda: all(node.latency.latency(p, m) is not None
                                 for p, m in node.default_models.items()))  # fmt: skip
    for n in range(5):
        status, body = await _generate(http, node.gateway.url, prompt=f"q{n}")
        assert status == 200 and body["response"]["provider"] == "anthropic"


async def test_the_performance_strategy_explores_and_finds_the_faster_provider(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    """Untried, anthropic ranks with the leader it ties and never comes first by rank
    alone; a share of requests explores the candidates not seen lately, finds it
    faster, and from then on it leads."""
    simulator.state.update("openai", {"latency_ms": 300})
    simulator.state.update("google", {"latency_ms": 300})
    router = RouterConfig(strategy="performance", explore_share=0.5, explore_after_s=600)
    node = await make_node(router=router)
    assert node.gateway is not None
    chosen: list[str] = []
    for n in range(60):  # bounded: with a share of 0.5 it takes a few requests
        status, body = await _generate(http, node.gateway.url, prompt=f"q{n}",
                                       model="legacy_fast")  # fmt: skip
        assert status == 200
        chosen.append(body["response"]["provider"])
        if chosen[-3:] == ["anthropic"] * 3:
            break
    assert chosen[-3:] == ["anthropic"] * 3, chosen


def test_streams_rank_by_time_to_first_token() -> None:
    now = [0.0]
    view = LatencyView(clock=lambda: now[0])
    view.observe("openai", "m", latency_ms=900, first_token_ms=50)
    view.observe("anthropic", "m", latency_ms=300, first_token_ms=200)
    assert view.latency("openai", "m") == 900 and view.latency("openai", "m", stream=True) == 50
    assert not view.stale("openai", "m", after_s=10)
    now[0] = 11.0
    assert view.stale("openai", "m", after_s=10) and view.stale("google", "m", after_s=10)


@pytest.mark.parametrize(
    ("knobs", "outcome"),
    [
        ({"error_rate": 1}, "server_error"),
        ({"rate_limit_rate": 1, "retry_after_s": 30}, "rate_limited"),
        ({"hang_rate": 1}, "timeout"),
    ],
)
async def test_falls_back_to_the_next_provider(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator,
    knobs: dict[str, Any], outcome: str,
) -> None:  # fmt: skip
    simulator.state.update("openai", knobs)
    node = await make_node(
        providers=("openai", "azure"),
        router=RouterConfig(strategy="round_robin", retry_base_ms=10),
        # A short timeout only where it is the subject: elsewhere a slow machine's
        # answer would turn a server error into a timeout.
        provider_overrides={"timeout_ms": 1_000 if outcome == "timeout" else 30_000,
                            "max_retries": 1},
    )  # fmt: skip
    assert node.gateway is not None
    status, body = await _generate(http, node.gateway.url, prompt="hi", model="gpt-4o")
    assert status == 200, body
    attempts = [(a["provider"], a["outcome"]) for a in body["orchestration"]["attempts"]]
    if attempts[0][0] == "azure":  # round robin started on the healthy one: ask again
        status, body = await _generate(http, node.gateway.url, prompt="hi", model="gpt-4o")
        attempts = [(a["provider"], a["outcome"]) for a in body["orchestration"]["attempts"]]
    assert attempts[-1] == ("azure", "ok")
    failed = [o for p, o in attempts if p == "openai"]
    # Server errors are retried once (max_retries=1); a 429 moves on at once, and so
    # does a timeout while another candidate remains (a hung provider would hang again).
    assert failed == ([outcome, outcome] if outcome == "server_error" else [outcome])
    assert body["response"]["provider"] == "azure"


async def test_a_passed_deadline_is_a_504(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    simulator.state.update("openai", {"latency_ms": 3_000})
    node = await make_node(providers=("openai",), provider_overrides={"timeout_ms": 10_000})
    assert node.gateway is not None
    started = asyncio.get_running_loop().time()
    status, body = await _generate(http, node.gateway.url, prompt="hi", timeout_ms=300)
    assert status == 504
    assert body["error"]["type"] == "deadline_exceeded"
    # Answered at its deadline, not when the provider answered (3 s).
    assert asyncio.get_running_loop().time() - started < 3.0


async def test_the_bus_client_raises_typed_errors(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",))
    client = Client(node.bus)
    answer = await client.generate(GenerateRequest(prompt="hi", model="gpt-4o"))
    assert answer.provider == "openai" and answer.content
    simulator.state.update("openai", {"error_rate": 1})
    with pytest.raises(NoProviderAvailable) as caught:
        await client.generate(GenerateRequest(prompt="hi"))
    assert caught.value.status == 503
    assert [a.outcome for a in caught.value.attempts] == ["server_error", "server_error"]
    fallback = await client.generate_with_fallback(GenerateRequest(prompt="hi"))
    assert fallback.fallback and fallback.provider == "system"
    simulator.state.update("openai", {"error_rate": 0, "latency_ms": 1_000})
    with pytest.raises(DeadlineExceeded):
        await client.generate(GenerateRequest(prompt="hi", timeout_ms=200))


async def test_every_request_ends_in_a_request_completed_event(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",))
    events: list[RequestCompleted] = []

    def keep(message: object) -> None:
        if isinstance(message, RequestCompleted):
            events.append(message)

    await node.bus.tail(node.bus.names.events, keep)
    client = Client(node.bus)
    ok = await client.generate(GenerateRequest(prompt="hi", user_id="ann", session_id="s1"))
    simulator.state.update("openai", {"error_rate": 1})
    with pytest.raises(NoProviderAvailable):
        await client.generate(GenerateRequest(prompt="hi", user_id="bob"))
    await eventually(lambda: len(events) == 2)
    first, second = events
    assert (first.request_id, first.outcome, first.user_id, first.session_id) == (
        ok.request_id, "ok", "ann", "s1")  # fmt: skip
    assert first.usage == ok.usage and first.cost_usd == ok.cost_usd
    assert first.provider == "openai" and first.attempts[0].outcome == "ok"
    assert (second.outcome, second.error_kind, second.user_id) == ("failed", "no_provider", "bob")


async def test_too_long_is_not_sent_to_a_model_with_no_larger_window(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    """OpenAI finds the request too long for gpt-4o: Azure's gpt-4o has the same window,
    so it is not called, and the request ends in a 400 at once."""
    node = await make_node(providers=("openai", "azure"),
                           router=RouterConfig(strategy="round_robin"))  # fmt: skip
    assert node.gateway is not None
    simulator.state.update("openai", {"context_window": 50})
    simulator.state.update("azure", {"context_window": 50})
    status, body = await _generate(http, node.gateway.url, prompt="word " * 60, model="gpt-4o",
                                   max_tokens=10)  # fmt: skip
    assert status == 400 and body["error"]["type"] == "context_too_long", body
    attempts = body["error"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["context_too_long", "context_too_long"]
    assert attempts[1]["message"].startswith("not tried")
    assert simulator.state.calls["openai"] + simulator.state.calls["azure"] == 1
