"""Hedged requests against the simulator: a slow first candidate is answered by the
second, called once the hedge delay passed; the slow call is cancelled, and only the
answer that was made is charged. A first call that answers in time is never hedged."""

from __future__ import annotations

from typing import Any

import aiohttp

from actors.providers.simulator import Simulator
from actors.runtime.config import RouterConfig
from tests.conftest import eventually
from tests.limits.conftest import quotas, user
from tests.request_path.conftest import ADMIN, MakeNode

# OpenAI and Azure both serve gpt-4o: OpenAI first (no traffic yet), Azure its hedge.
HEDGED = RouterConfig(hedge_delay_ms=100, explore_share=0, retry_base_ms=10)


async def _generate(http: aiohttp.ClientSession, node: Any, **body: Any) -> tuple[int, Any]:
    url = f"{node.gateway.url}/ai-orchestration/generate"
    async with http.post(url, json=body) as response:
        return response.status, await response.json()


async def test_a_slow_first_call_is_hedged_and_cancelled(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    simulator.state.update("openai", {"latency_ms": 30_000})  # far past any hedge delay
    node = await make_node(providers=("openai", "azure"), router=HEDGED,
                           quota=quotas(daily_token_limit=10**6))  # fmt: skip
    uid = user()
    status, body = await _generate(http, node, prompt="hi", model="gpt-4o", hedge=True,
                                   user_id=uid)  # fmt: skip
    assert status == 200, body
    assert body["response"]["provider"] == "azure"
    tried = {(a["provider"], a["outcome"], a.get("hedge", False))
             for a in body["orchestration"]["attempts"]}  # fmt: skip
    assert tried == {("azure", "ok", True), ("openai", "cancelled", False)}
    assert simulator.state.calls["openai"] == simulator.state.calls["azure"] == 1
    assert body["orchestration"]["provider_selected"] == "azure"
    used = body["response"]["usage"]["total_tokens"]

    async def charged() -> bool:
        url = f"{node.gateway.url}/ai-orchestration/quotas/{uid}"  # type: ignore[union-attr]
        async with http.get(url, headers=ADMIN) as response:
            rows = {r["quota_type"]: r for r in (await response.json())["quotas"]}
        return bool(rows["daily_tokens"]["used"] == used)  # the answer made, no more

    await eventually(charged)


async def test_a_call_that_answers_in_time_is_not_hedged(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    router = RouterConfig(hedge_delay_ms=20_000, explore_share=0, hedge=True)
    node = await make_node(providers=("openai", "azure"), router=router)
    status, body = await _generate(http, node, prompt="hi", model="gpt-4o")
    assert status == 200 and body["response"]["provider"] == "openai"
    assert simulator.state.calls["azure"] == 0
    assert len(body["orchestration"]["attempts"]) == 1
