"""Hedged requests against the simulator: a slow first candidate is answered by the
second, called once the hedge delay passed; the slow call is cancelled, and only the
answer that was made is charged. A first call that answers in time is never hedged."""

from __future__ import annotations

import asyncio
import contextlib
import json
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


async def _stream_text(http: aiohttp.ClientSession, node: Any) -> str:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Tell me a story"}],
            "stream": True, "hedge": True}  # fmt: skip
    text = ""
    async with http.post(f"{node.gateway.url}/v1/chat/completions", json=body) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: {"):
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    text += (choice.get("delta") or {}).get("content") or ""
    return text


async def test_a_stream_is_hedged_until_its_first_text_only(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    """No first text from OpenAI within the delay: Azure is called too, its text is the
    stream's, and OpenAI's call never sends any."""
    simulator.state.update("openai", {"latency_ms": 30_000})
    node = await make_node(providers=("openai", "azure"), router=HEDGED)
    text = await _stream_text(http, node)
    assert text and simulator.state.calls["azure"] == 1 and simulator.state.calls["openai"] == 1


async def test_a_stream_already_sending_is_not_hedged(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    """Its first text came before the delay ended: however long the rest takes, the
    stream is the first call's."""
    # A quick start, then a stream that lasts well past the delay (about 30 pieces).
    simulator.state.update("openai", {"chunk_delay_ms": 100})
    router = RouterConfig(hedge_delay_ms=1_000, explore_share=0)
    node = await make_node(providers=("openai", "azure"), router=router)
    started = asyncio.get_running_loop().time()
    text = await _stream_text(http, node)
    assert asyncio.get_running_loop().time() - started > 1.0  # it was still going
    assert text and simulator.state.calls["azure"] == 0


async def test_a_caller_leaving_before_the_hedge_delay_frees_the_call(
    make_node: MakeNode, simulator: Simulator
) -> None:
    simulator.state.update("openai", {"hang_rate": 1})
    router = RouterConfig(hedge_delay_ms=120_000, explore_share=0, request_timeout_ms=300_000)
    node = await make_node(providers=("openai", "azure"), router=router)
    assert node.gateway is not None
    url = f"{node.gateway.url}/ai-orchestration/generate"
    async with aiohttp.ClientSession() as session:
        asking = asyncio.create_task(
            session.post(url, json={"prompt": "hi", "model": "gpt-4o", "hedge": True})
        )
        await eventually(lambda: simulator.state.hanging["openai"] == 1)
        asking.cancel()  # the caller goes away long before the hedge delay
        with contextlib.suppress(asyncio.CancelledError):
            await asking
    await eventually(lambda: simulator.state.hanging["openai"] == 0)  # its call let go
    assert simulator.state.calls["azure"] == 0
