"""The metrics actor: /metrics in the Prometheus format, stats of the whole deployment."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.runtime.config import CacheConfig
from tests.conftest import eventually
from tests.request_path.conftest import ADMIN, MakeNode


async def _scrape(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _total(families: dict[str, Any], name: str, **labels: str) -> float:
    family = families.get(name)
    if family is None:
        return 0.0
    wanted = (name, name + "_total")
    return sum(
        s.value for s in family.samples
        if s.name in wanted and all(s.labels.get(k) == v for k, v in labels.items())
    )  # fmt: skip


async def _generate(http: aiohttp.ClientSession, url: str, **body: Any) -> None:
    async with http.post(f"{url}/ai-orchestration/generate", json=body) as response:
        assert response.status == 200, await response.text()


async def test_metrics_move_with_traffic_and_parse(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert node.gateway is not None
    url = node.gateway.url
    for n in range(3):
        await _generate(http, url, prompt=f"q{n}", model="gpt-4o")
    await eventually(lambda: _has(http, url, "aio_requests", 3))
    await _generate(http, url, prompt="q0", model="gpt-4o")  # from the cache
    await eventually(lambda: _has(http, url, "aio_cache_hits", 1))
    families = await _scrape(http, url)
    assert _total(families, "aio_requests", provider="openai", outcome="ok") >= 3
    usage = families["gen_ai_client_token_usage"]
    assert {s.labels.get("gen_ai_token_type") for s in usage.samples} >= {"input", "output"}
    assert {s.labels.get("gen_ai_provider_name") for s in usage.samples} == {"openai"}
    duration = families["gen_ai_client_operation_duration_seconds"]
    assert sum(s.value for s in duration.samples if s.name.endswith("_count")) >= 3
    assert _total(families, "aio_tokens", type="output") > 0
    assert "aio_stream_pending" in families and "aio_dead_letters" in families
    assert _total(families, "aio_admissions", result="admitted") >= 3  # this process's own
    overhead = families["aio_gateway_overhead_seconds"]
    assert sum(s.value for s in overhead.samples if s.name.endswith("_count")) >= 4
    # A stream's time to its first text.
    async with http.post(f"{url}/v1/chat/completions", json={
        "model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "ttft"}],
    }) as response:  # fmt: skip
        await response.read()
    await eventually(lambda: _first_chunks(http, url))


async def _first_chunks(http: aiohttp.ClientSession, url: str) -> bool:
    family = (await _scrape(http, url)).get("gen_ai_client_operation_time_to_first_chunk_seconds")
    return family is not None and sum(
        s.value for s in family.samples if s.name.endswith("_count")
    ) == 1  # fmt: skip


async def _has(http: aiohttp.ClientSession, url: str, name: str, at_least: float) -> bool:
    return _total(await _scrape(http, url), name) >= at_least


async def test_stats_describe_the_whole_deployment_and_reset(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    first = await make_node(providers=("openai", "anthropic"))
    second = await make_node(providers=("openai", "anthropic"))
    assert first.gateway is not None and second.gateway is not None
    for n in range(4):
        await _generate(http, (first, second)[n % 2].gateway.url, prompt=f"s{n}",  # type: ignore[union-attr]
                        user_id=("ann", "bob", "ann", "ann")[n])  # fmt: skip

    async def total(url: str) -> int:
        async with http.get(f"{url}/ai-orchestration/stats") as response:
            body = await response.json()
        return int(body["requests"]["total"])

    await eventually(lambda: _equals(total(first.gateway.url), 4))  # type: ignore[union-attr]
    await eventually(lambda: _equals(total(second.gateway.url), 4))  # type: ignore[union-attr]

    async def calls() -> bool:
        url = f"{second.gateway.url}/ai-orchestration/monitoring/stats"  # type: ignore[union-attr]
        async with http.get(url) as response:
            found = await response.json()
        return sum(p["calls"] for p in found["providers"].values()) >= 4

    await eventually(calls)
    async with http.get(f"{second.gateway.url}/ai-orchestration/monitoring/stats") as response:
        body = await response.json()
    assert all(p["latency_ms"]["p50"] is not None for p in body["providers"].values())

    # What users used today and this month, across both processes, top users first
    # (each process answers from its own snapshot, up to a second old: wait for both).
    async def used_today() -> bool:
        nonlocal body
        async with http.get(f"{second.gateway.url}/ai-orchestration/stats") as response:  # type: ignore[union-attr]
            body = await response.json()
        return bool(body["usage"]["daily"]["requests"] == 4)

    await eventually(used_today)
    for period in ("daily", "monthly"):
        used = body["usage"][period]
        assert (used["requests"], used["users"]) == (4, 2), used
        top = used["top_users"]
        assert [(u["user_id"], u["requests"]) for u in top] == [("ann", 3), ("bob", 1)], top
        assert used["tokens"] == sum(u["tokens"] for u in top) > 0
        assert used["cost_usd"] == pytest.approx(sum(u["cost_usd"] for u in top))
    async with http.post(f"{first.gateway.url}/ai-orchestration/monitoring/reset") as response:
        assert response.status == 401  # a management endpoint
    async with http.post(f"{first.gateway.url}/ai-orchestration/monitoring/reset",
                         headers=ADMIN, json={}) as response:  # fmt: skip
        assert response.status == 200
    # Each process takes its numbers at most once a second: soon, every one is reset.
    await eventually(lambda: _equals(total(second.gateway.url), 0))  # type: ignore[union-attr]

    async def nothing_used() -> bool:
        async with http.get(f"{second.gateway.url}/ai-orchestration/stats") as response:  # type: ignore[union-attr]
            return bool((await response.json())["usage"]["daily"]["requests"] == 0)

    await eventually(nothing_used)


async def _equals(value: Any, expected: int) -> bool:
    return await value == expected
