"""Several deployments of one provider (another Azure resource, another OpenAI key),
each with its own breaker and its own limits as the provider grants them: two
processes sharing 100 requests never send either deployment more than it allows."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiohttp
import msgspec
import pytest

from actors.providers import Account, ProvidersConfig, Secret
from actors.providers.simulator import Simulator
from actors.runtime.config import RouterConfig
from tests._audit import secret
from tests.request_path.conftest import MakeNode

SIXTY = {"requests_per_minute": 60}


def _east() -> dict[str, Any]:
    return {"accounts": {"east": Account(api_key=Secret(secret("az-east")), **SIXTY)}, **SIXTY}


async def _generate(http: aiohttp.ClientSession, node: Any, **body: Any) -> tuple[int, Any]:
    url = f"{node.gateway.url}/ai-orchestration/generate"
    async with http.post(url, json=body) as response:
        return response.status, await response.json()


def test_accounts_are_deployments_of_their_provider() -> None:
    config = msgspec.convert(
        {"azure": {"api_key": "k", "base_url": "https://a.test", "deployment": "d",
                   "requests_per_minute": 60,
                   "accounts": {"east": {"api_key": "k2", "base_url": "https://b.test",
                                         "tokens_per_minute": 1000}}}},
        ProvidersConfig, dec_hook=lambda kind, value: Secret(value),
    )  # fmt: skip
    names = [name for name, p in config.items() if p.enabled]
    assert names == ["azure", "azure:east"]
    east = config.get("azure:east")
    assert east.base_url == "https://b.test" and east.requests_per_minute == 60
    assert east.tokens_per_minute == 1000 and repr(east.api_key) == "'***'"
    with pytest.raises(ValueError, match="deployment is Azure's only"):
        msgspec.convert({"openai": {"accounts": {"x": {"deployment": "d"}}}}, ProvidersConfig)


async def test_two_processes_never_send_a_deployment_more_than_it_grants(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    overrides = {"max_retries": 0, "azure": _east()}
    router = RouterConfig(explore_share=0, retry_base_ms=10)
    nodes = [await make_node(providers=("azure",), provider_overrides=overrides, router=router)
             for _ in range(2)]  # fmt: skip
    gate = asyncio.Semaphore(8)

    async def one(n: int) -> tuple[int, Any]:
        async with gate:
            return await _generate(http, nodes[n % 2], prompt=f"q{n}", model="gpt-4o")

    answers = await asyncio.gather(*(one(n) for n in range(100)))
    assert all(status == 200 for status, _body in answers), [b for s, b in answers if s != 200]
    served = collections.Counter(body["response"]["provider"] for _s, body in answers)
    assert set(served) == {"azure", "azure:east"}, served
    assert max(served.values()) <= 60 and sum(served.values()) == 100
    assert simulator.state.calls["azure"] == 100  # every call made answered: none refused
    # Both used up (120 granted, 100 used, 20 more fit): the 21st more is refused.
    more = [await _generate(http, nodes[0], prompt=f"more {n}", model="gpt-4o")
            for n in range(21)]  # fmt: skip
    assert [s for s, _b in more].count(200) == 20
    status, body = more[-1]
    assert status == 503 and {a["outcome"] for a in body["error"]["attempts"]} == {"rate_limited"}
    assert body["error"]["attempts"][0]["retry_after"] > 0


async def test_headroom_balance_sends_each_call_where_most_is_left(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    """With router.balance = headroom, the deployments share the load as their grants
    allow (the strategy alone would use the first until it is used up)."""
    overrides = {"max_retries": 0, "azure": _east()}
    router = RouterConfig(explore_share=0, balance="headroom")
    node = await make_node(providers=("azure",), provider_overrides=overrides, router=router)
    served: collections.Counter[str] = collections.Counter()
    for n in range(20):  # one at a time: each sees the load the last one left
        status, body = await _generate(http, node, prompt=f"q{n}", model="gpt-4o")
        assert status == 200
        served[body["response"]["provider"]] += 1
    assert served["azure"] >= 5 and served["azure:east"] >= 5, served
