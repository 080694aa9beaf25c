"""Three providers failing three ways at once (OpenAI hangs, Anthropic answers 500,
Gemini 429 with a Retry-After): requests end by their deadline (the worst overshoot
is measured and printed), every breaker opens, the 429's for its Retry-After, and
once a provider heals, requests fall back to it and its breaker closes."""

from __future__ import annotations

import asyncio
import time

from actors.client import Client, GenerateRequest
from actors.messages import GenerateResponse
from actors.providers.simulator import Simulator
from actors.runtime.config import BreakerConfig, RouterConfig
from tests.conftest import eventually
from tests.request_path.conftest import MakeNode
from tests.request_path.test_breaker import _open_time_over, _opened_at

QUICK = BreakerConfig(
    window_size=4, minimum_calls=2, failure_rate_threshold=50, open_ms=600,
    half_open_calls=1, half_open_max_wait_ms=2_000, refresh_ms=200,
)  # fmt: skip
TIMEOUT_MS = 2_000
RETRY_AFTER_S = 3
PROVIDERS = ("openai", "anthropic", "google")


async def test_hung_failing_and_limited_providers(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(
        providers=PROVIDERS, breaker=QUICK, provider_overrides={"max_retries": 1},
        router=RouterConfig(strategy="round_robin", retry_base_ms=10, retry_max_ms=50,
                            explore_share=0, request_timeout_ms=TIMEOUT_MS),
    )  # fmt: skip
    simulator.state.update("openai", {"hang_rate": 1})
    simulator.state.update("anthropic", {"error_rate": 1})
    simulator.state.update("google", {"rate_limit_rate": 1, "retry_after_s": RETRY_AFTER_S})
    client = Client(node.bus)
    overshoots: list[float] = []

    async def ask(n: int) -> object:
        sent = time.monotonic()
        try:
            return await client.generate(GenerateRequest(prompt=f"q{n}", timeout_ms=TIMEOUT_MS))
        except Exception as exc:  # every provider failing: a typed error
            return exc
        finally:
            overshoots.append(time.monotonic() - sent - TIMEOUT_MS / 1000)

    n, seen_open = 0, set()
    while seen_open != set(PROVIDERS):  # each opens (a trial may half-open it again)
        answers = await asyncio.gather(*(ask(n + i) for i in range(3)))
        n += 3
        assert not any(isinstance(a, GenerateResponse) for a in answers), answers
        seen_open |= {p for p in PROVIDERS if node.breakers.get(p).state == "open"}
        assert n < 90, {p: node.breakers.get(p).state for p in PROVIDERS}
    print(f"{n} requests with every provider failing: the latest answered "
          f"{max(overshoots) * 1000:+.0f} ms from its deadline")  # fmt: skip
    # The 429 holds Gemini's breaker open for its Retry-After, past open_ms.
    await eventually(lambda: node.breakers.get("google").state == "open")
    opened_at = await _opened_at(node, "google")
    assert node.breakers.get("google").open_until_ms - opened_at >= RETRY_AFTER_S * 1000
    # Anthropic heals: once its open time is over, a trial call closes its breaker and
    # requests fall back to it while the others still fail.
    simulator.state.update("anthropic", {"error_rate": 0})
    await eventually(lambda: node.breakers.get("anthropic").state == "open")
    await _open_time_over(node, "anthropic")

    async def answered() -> bool:
        return isinstance(await ask(0), GenerateResponse)

    await eventually(answered)
    await eventually(lambda: node.breakers.get("anthropic").state == "closed")
    # The others heal: every request is answered, and each breaker closes after a trial.
    simulator.state.update("openai", {"hang_rate": 0})
    simulator.state.update("google", {"rate_limit_rate": 0})

    async def all_closed() -> bool:
        answers = await asyncio.gather(*(ask(i) for i in range(3)))
        assert all(isinstance(a, GenerateResponse) for a in answers), answers
        return all(node.breakers.get(p).state == "closed" for p in PROVIDERS)

    await eventually(all_closed, interval=0.2)
