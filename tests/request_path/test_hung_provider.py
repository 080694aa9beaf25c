"""A provider that hangs: the next candidate answers in time, the breaker counts it at
once, and a call whose caller went away is cancelled, not left running."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from actors.client import Client, DeadlineExceeded, GenerateRequest
from actors.messages import RequestCompleted
from actors.providers.simulator import Simulator
from actors.runtime.config import BreakerConfig, RouterConfig
from tests.conftest import eventually
from tests.request_path.conftest import MakeNode

# A provider timeout far past the request's deadline, as by default (60 s): the
# attempt's budget, not the SDK's timeout, must end the wait.
SLOW_SDK = {"timeout_ms": 60_000, "max_retries": 1}


async def _generate(
    http: aiohttp.ClientSession, url: str, **body: object
) -> tuple[int, dict[str, object]]:
    async with http.post(f"{url}/ai-orchestration/generate", json=body) as response:
        return response.status, await response.json()


async def test_a_hung_provider_leaves_time_for_the_next_one(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    simulator.state.update("openai", {"hang_rate": 1})
    node = await make_node(
        router=RouterConfig(strategy="round_robin", retry_base_ms=10),
        provider_overrides=SLOW_SDK,
    )
    assert node.gateway is not None
    for n in range(3):  # round robin: each candidate comes first once
        status, body = await _generate(http, node.gateway.url, prompt=f"q{n}", model="fast",
                                       max_tokens=50, timeout_ms=5_000)  # fmt: skip
        assert status == 200, body
        answer, orchestration = body["response"], body["orchestration"]
        assert isinstance(answer, dict) and isinstance(orchestration, dict)
        assert answer["provider"] != "openai"
        outcomes = [(a["provider"], a["outcome"]) for a in orchestration["attempts"]]
        if ("openai", "timeout") in outcomes:  # tried, and left for the next at once
            assert outcomes.count(("openai", "timeout")) == 1, outcomes
            break
    else:
        pytest.fail("openai was never tried first")
    # The cut-off call was let go: the hung provider's connection was closed.
    await eventually(lambda: simulator.state.hanging["openai"] == 0, timeout=30)


async def test_the_breaker_of_a_hung_provider_opens_after_its_threshold(
    make_node: MakeNode, simulator: Simulator
) -> None:
    simulator.state.update("openai", {"hang_rate": 1})
    node = await make_node(
        providers=("openai", "anthropic"),
        router=RouterConfig(strategy="round_robin"),
        breaker=BreakerConfig(window_size=3, minimum_calls=3, refresh_ms=200),
        provider_overrides=SLOW_SDK,
    )
    client = Client(node.bus)
    tried = 0
    while tried < 3:  # every request answered, each openai attempt a timeout
        # No model: each provider's default, openai and anthropic in turn.
        answer = await client.generate(GenerateRequest(prompt="q", timeout_ms=4_000))
        assert answer.provider == "anthropic"
        tried += sum(a.provider == "openai" and a.outcome == "timeout" for a in answer.attempts)
    await eventually(lambda: node.breakers.refuses("openai"), timeout=30)
    state = node.breakers.get("openai")
    assert state.state == "open"
    for _ in range(2):  # whichever comes first, openai is skipped now
        answer = await client.generate(GenerateRequest(prompt="q", timeout_ms=4_000))
        assert [a.outcome for a in answer.attempts if a.provider == "openai"] == ["breaker_open"]


async def test_a_caller_who_goes_away_cancels_the_provider_call(
    make_node: MakeNode, simulator: Simulator
) -> None:
    simulator.state.update("openai", {"hang_rate": 1})
    node = await make_node(providers=("openai",), provider_overrides=SLOW_SDK)
    completed: list[RequestCompleted] = []
    await node.bus.tail(node.bus.names.events, lambda m: completed.append(m)  # type: ignore[arg-type]
                        if isinstance(m, RequestCompleted) else None)  # fmt: skip
    client = Client(node.bus)
    request = GenerateRequest(prompt="q", timeout_ms=60_000)
    waiting = asyncio.create_task(client.generate(request))
    await eventually(lambda: simulator.state.hanging["openai"] == 1, timeout=30)
    waiting.cancel()  # as when an HTTP client disconnects
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await eventually(lambda: simulator.state.hanging["openai"] == 0, timeout=30)
    (done,) = await eventually(lambda: [c for c in completed if c.request_id == request.request_id],
                               timeout=30)  # fmt: skip
    assert done.error_kind == "cancelled"
    assert [a.outcome for a in done.attempts] == ["cancelled"]
    calls = node.bus.names.calls("openai")

    async def nothing_pending() -> bool:
        return (await node.bus.redis.xpending(calls, "breaker"))["pending"] == 0

    await eventually(nothing_pending, timeout=30)


@pytest.mark.parametrize("path", ["/ai-orchestration/generate", "/v1/chat/completions"])
async def test_an_http_client_that_disconnects_cancels_the_provider_call(
    make_node: MakeNode, simulator: Simulator, path: str
) -> None:
    simulator.state.update("openai", {"hang_rate": 1})
    node = await make_node(providers=("openai",), provider_overrides=SLOW_SDK)
    assert node.gateway is not None
    body: dict[str, object] = {"model": "gpt-4o"}
    if path.startswith("/v1"):
        body |= {"messages": [{"role": "user", "content": "q"}], "stream": True}
    else:
        body |= {"prompt": "q"}
    async with aiohttp.ClientSession() as http:
        waiting = asyncio.create_task(http.post(f"{node.gateway.url}{path}", json=body))
        await eventually(lambda: simulator.state.hanging["openai"] == 1, timeout=30)
        waiting.cancel()  # the client gives up: its connection closes
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await eventually(lambda: simulator.state.hanging["openai"] == 0, timeout=30)


async def test_a_budget_spent_waiting_in_the_breaker_is_not_held_against_the_provider(
    make_node: MakeNode, simulator: Simulator
) -> None:
    """A breaker that calls one at a time: a short request waits behind a long one until
    its budget is gone. It is not called, and the provider is not blamed for it."""
    # The short one's budget (2 s) ends while the long one runs; its wait for the
    # breaker (budget + 0.5 s) does not yet: it reaches the breaker with nothing left.
    simulator.state.update("openai", {"latency_ms": 2_250})
    node = await make_node(
        providers=("openai",),
        breaker=BreakerConfig(window_size=2, minimum_calls=1, refresh_ms=200, concurrency=1),
        provider_overrides={"timeout_ms": 60_000, "max_retries": 0},
    )
    client = Client(node.bus)
    slow = asyncio.create_task(client.generate(GenerateRequest(prompt="a", timeout_ms=30_000)))
    await eventually(lambda: simulator.state.calls["openai"] == 1)
    with pytest.raises(DeadlineExceeded) as caught:  # its one attempt had all its time
        await client.generate(GenerateRequest(prompt="b", timeout_ms=2_000))
    assert [a.outcome for a in caught.value.attempts] == ["timeout"]
    assert (await slow).content
    assert simulator.state.calls["openai"] == 1  # the waiting one was never sent
    assert not node.breakers.refuses("openai")
    assert (await node.store.read(["openai"]))["openai"].state == "closed"
