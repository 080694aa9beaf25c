"""Exact under concurrency, across processes, with a wrong clock, and on redelivery."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.client import Client, GenerateRequest, QuotaError, RateLimitError
from actors.messages import AdmissionAsk, AdmissionVerdict, limiter_stream, quota_stream
from actors.node import Node
from actors.providers import Catalog
from actors.providers.simulator import Simulator
from actors.runtime.config import LIMIT_FIELDS, QUOTA_FIELDS
from bus import lua_source
from tests._cluster import async_client
from tests.conftest import PATIENCE, eventually
from tests.limits.conftest import limits, quotas, user
from tests.request_path.conftest import MakeNode

ROOT = Path(__file__).resolve().parents[2]


async def _hammer(settings: dict[str, Any]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.limits._hammer", json.dumps(settings)],
        cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.to_thread(process.stdout.readline)
    assert line.strip() == "ready", line
    return process


async def _result(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 120)
    await asyncio.to_thread(process.wait, 30)
    return dict(json.loads(line))


@pytest.mark.parametrize("skew_s", [0, 30], ids=["same-clock", "one-clock-30s-off"])
async def test_two_processes_admit_exactly_the_limit(
    server_url: str, simulator: Simulator, skew_s: int
) -> None:
    """200 concurrent requests from each of two processes against 100 requests/min."""
    ns, uid = f"ex{os.urandom(5).hex()}", user()
    common = {
        "url": server_url, "ns": ns, "simulator": simulator.url, "count": 200, "user": uid,
        "limits": dict.fromkeys(LIMIT_FIELDS) | {"requests_per_minute": 100},
        "quota": dict.fromkeys(QUOTA_FIELDS),
    }  # fmt: skip
    processes = [await _hammer(common), await _hammer(common | {"skew_s": skew_s})]
    client = async_client(server_url)
    try:
        await client.rpush(f"{ns}:go", 1, 1)  # one start signal for each
        results = [await _result(p) for p in processes]
        admitted = sum(r["admitted"] for r in results)
        refused = sum(r["refused"].get("rate_limited", 0) for r in results)
        assert (admitted, refused) == (100, 300), results
        assert results[1]["clock_off_s"] == pytest.approx(skew_s, abs=2)  # it was off
        # The counter holds the admitted ones only: the refused did not count.
        assert await client.zcard(f"{ns}:limits:{{{uid}}}:requests") == 100
        # And the quota keeper, which reserved for every request the limiter refused,
        # released them when the router reported them refused.
        day_keys = [k async for k in client.scan_iter(match=f"{ns}:quota:{{{uid}}}:day:*")]

        async def requests_counted() -> bool:
            return int(await client.hget(day_keys[0], "requests") or 0) == 100

        await eventually(requests_counted)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        keys = list({k async for k in client.scan_iter(match=f"{ns}:*", count=1000)})
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_tokens_reserved_then_settled_to_real_usage(
    make_node: MakeNode, simulator: Simulator
) -> None:
    """1,000 tokens/min, 10 concurrent requests with max_tokens 300: at most 3 in flight."""
    node = await make_node(providers=("openai",), limits=limits(tokens_per_minute=1_000))
    # All ten in flight at once: none is answered (and settled) before the last is
    # admitted, with room for a slow machine to admit them.
    simulator.state.update("openai", {"latency_ms": 2_000})
    client, uid = Client(node.bus), user()
    answers = await asyncio.gather(
        *(client.generate(GenerateRequest(prompt=f"q{i}", user_id=uid, max_tokens=300))
          for i in range(10)),
        return_exceptions=True,
    )  # fmt: skip
    served = [a for a in answers if not isinstance(a, BaseException)]
    refusals = [a for a in answers if isinstance(a, RateLimitError)]
    assert len(served) == 3 and len(refusals) == 7, answers
    assert {r.limit_type for r in refusals} == {"tokens_per_minute"}
    real = sum(a.usage.total_tokens for a in served)

    async def settled() -> bool:
        states = {s.name: s for s in await node.limits.status(uid)}
        return states["tokens_per_minute"].remaining == 1_000 - real

    await eventually(settled)


async def test_a_cost_budget_is_never_exceeded(make_node: MakeNode, simulator: Simulator) -> None:
    """$0.45 a day and a minute, requests whose worst case costs about $0.10."""
    node = await make_node(
        providers=("openai",),
        limits=limits(cost_per_minute=0.45),
        quota=quotas(daily_cost_limit=0.45),
    )
    simulator.state.update("openai", {"latency_ms": 2_000})  # all in flight at once
    client, uid = Client(node.bus), user()
    worst = Catalog().get("gpt-4o").cost(0, 10_000)
    assert worst == pytest.approx(0.10)
    # Two judges (the limiter, the quota keeper) admit the same four only if they see the
    # burst in the same order. Right after Redis forgot its scripts (other tests flush
    # them) the calls that found a script missing are sent again after ones that did
    # not, and the orders differ (0 to 3 served): never over budget, but not this
    # test's subject. Load them first.
    for script in ("limiter_admit", "quota_admit"):
        await node.bus.redis.script_load(lua_source("actors.limits", script))
    answers = await asyncio.gather(
        *(client.generate(GenerateRequest(prompt=f"q{i}", user_id=uid, model="gpt-4o",
                                         max_tokens=10_000)) for i in range(20)),
        return_exceptions=True,
    )  # fmt: skip
    served = [a for a in answers if not isinstance(a, BaseException)]
    assert len(served) == 4, answers  # a fifth worst case would pass $0.45
    assert all(isinstance(a, RateLimitError | QuotaError) for a in answers if a not in served)
    spent = sum(a.cost_usd for a in served)

    async def settled() -> bool:
        usage = await node.quotas.get_usage(uid)
        daily = next(r for r in usage["quotas"] if r["quota_type"] == "daily_cost")
        return bool(daily["used"] == pytest.approx(spent, abs=1e-9))

    await eventually(settled)
    assert spent <= 0.45


async def test_a_redelivered_request_is_charged_once(make_node: MakeNode) -> None:
    """The same admission ask twice (as when a request's entry is delivered again after
    its worker died): reserved once; a new request reusing the id is a new request."""
    node = await make_node(providers=("openai",), limits=limits(requests_per_minute=10),
                           quota=quotas(daily_request_limit=10))  # fmt: skip
    uid, names = user(), node.bus.names
    ask = AdmissionAsk(request_id="r1", user_id=uid, tokens=100, cost_usd=0.01,
                       reservation_id="r1@1-0")  # fmt: skip
    for _ in range(2):
        verdicts = await node.bus.ask_all(
            [(limiter_stream(names), ask), (quota_stream(names), ask)], PATIENCE
        )
        assert all(isinstance(v, AdmissionVerdict) and v.admitted for v in verdicts)
    assert await _counted(node, uid) == (1, 1)
    client = Client(node.bus)
    request = GenerateRequest(prompt="once", user_id=uid)
    await client.generate(request)
    await client.generate(request)  # the same id again, from a client: charged again

    async def counted() -> bool:
        return await _counted(node, uid) == (3, 3)

    await eventually(counted)


async def _counted(node: Node, uid: str) -> tuple[float, float]:
    """Requests the limiter (per minute) and the quota keeper (today) have counted."""
    usage = await node.quotas.get_usage(uid)
    daily = next(r for r in usage["quotas"] if r["quota_type"] == "daily_requests")
    states = {s.name: s for s in await node.limits.status(uid)}
    minute = states["requests_per_minute"]
    return minute.limit - minute.remaining, daily["used"]
