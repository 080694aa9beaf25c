"""What the dashboard reads beside the stats: the last hour in steps, the users page by
page, the alerts after an id, the bus itself; and what the cache saved, per model."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
import msgspec
import pytest

from actors.providers.simulator import Simulator
from actors.runtime.config import CacheConfig
from tests.conftest import eventually
from tests.request_path.conftest import ADMIN, NO_LIMITS, MakeNode


async def _get(http: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with http.get(url, headers=ADMIN) as response:
        body = await response.json()
        assert response.status == status, body
        return body


async def _chat(http: aiohttp.ClientSession, url: str, user: str, text: str) -> int:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}],
            "user": user, "temperature": 0}  # fmt: skip
    async with http.post(f"{url}/v1/chat/completions", json=body) as response:
        await response.read()
        return response.status


async def test_the_timeline_counts_each_step_and_refuses_a_bad_window(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    limits = msgspec.structs.replace(NO_LIMITS, requests_per_minute=3)
    node = await make_node(providers=("openai",), cache=CacheConfig(), limits=limits)
    assert node.gateway is not None
    url = node.gateway.url
    simulator.state.update("openai", {"latency_ms": 300})  # the calls' bucket: 250-500 ms
    statuses = [await _chat(http, url, "ann", text) for text in ("a", "b", "a", "c")]
    assert statuses == [200, 200, 200, 429]  # the third from the cache, the fourth refused

    async def counted() -> Any:
        found = await _get(http, f"{url}/ai-orchestration/monitoring/timeline?minutes=2")
        return found if sum(p["requests"] for p in found["points"]) == 4 else None

    timeline = await eventually(counted)
    points = timeline["points"]
    assert timeline["step_s"] == 10 and len(points) == 12
    assert all(b["t"] - a["t"] == 10 for a, b in itertools.pairwise(points))
    assert sum(p["rejected"] for p in points) == 1
    assert sum(p["cache_hits"] for p in points) == 1
    assert sum(p["errors"] for p in points) == 0
    assert sum(p["cost_usd"] for p in points) > 0
    # The four ended within a few seconds: in the last steps, not anywhere in the window.
    busy = [p for p in points if p["requests"]]
    assert busy and all(p["t"] >= timeline["now_ms"] / 1000 - 30 for p in busy)
    assert points[-1]["t"] <= timeline["now_ms"] / 1000 < points[-1]["t"] + 10
    # Three timed (the refusal is not): two calls of 300 ms and a hit of a few ms.
    if len(busy) == 1:
        assert 250 <= busy[0]["p50_ms"] <= 500 and 250 <= busy[0]["p95_ms"] <= 500
    assert all(p["p50_ms"] is None for p in points if not p["requests"])
    assert "type" not in timeline  # the bus's tag is not the HTTP API's
    # Each provider over the last five minutes: the two calls made (no hit, no refusal).
    assert timeline["recent_s"] == 300
    (recent,) = timeline["providers"]
    assert (recent["provider"], recent["calls"], recent["errors"]) == ("openai", 2, 0)
    assert 250 <= recent["p50_ms"] <= recent["p95_ms"] <= 500
    for bad in ("0", "61", "x", "\uff15", "1_0", " 5", "5&minutes=5", "5&colour=red"):
        async with http.get(f"{url}/ai-orchestration/monitoring/timeline?minutes={bad}") as r:
            message = (await r.json())["error"]["message"]
            assert r.status == 400 and ("minutes" in message or "colour" in message), message
    async with http.post(f"{url}/ai-orchestration/monitoring/reset", headers=ADMIN,
                         json={}) as response:  # fmt: skip
        assert response.status == 200
    after = await _get(http, f"{url}/ai-orchestration/monitoring/timeline?minutes=2")
    assert not any(p["requests"] for p in after["points"])  # the reset forgot every step
    assert not [k async for k in node.bus.redis.scan_iter(match=f"{node.bus.names.ns}:metrics:*")]


async def test_users_are_paged_by_each_measure(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    limits = msgspec.structs.replace(NO_LIMITS, requests_per_minute=2)
    node = await make_node(providers=("openai",), limits=limits)
    assert node.gateway is not None
    url = node.gateway.url
    # Two a minute each: u2 has one refused, u3 two; "<b>x</b>" is an id like any.
    plan = {"u0": 1, "u1": 2, "u2": 3, "u3": 4, "<b>x</b>": 1}
    for user, count in plan.items():
        for n in range(count):
            await _chat(http, url, user, f"{user} {n}")
    users = f"{url}/ai-orchestration/users"

    async def all_seen() -> Any:
        page = await _get(http, f"{users}?sort=rejections&limit=2")
        return page if page["total"] == 5 and page["users"][0]["rejections"] == 2 else None

    page = await eventually(all_seen)
    assert [(u["user_id"], u["rejections"], u["requests"]) for u in page["users"]] == [
        ("u3", 2, 2), ("u2", 1, 2)]  # fmt: skip
    second = await _get(http, f"{users}?sort=requests&offset=2&limit=2&period=monthly")
    assert second["period"] == "monthly" and second["offset"] == 2
    assert [u["requests"] for u in second["users"]] == [2, 1]
    everyone = await _get(http, f"{users}?sort=cost&limit=200")
    costs = [u["cost_usd"] for u in everyone["users"]]
    assert len(costs) == 5 and costs == sorted(costs, reverse=True) and costs[-1] > 0
    assert "<b>x</b>" in {u["user_id"] for u in everyone["users"]}
    # With each user's rate limits and quotas, for the whole page in one call.
    standing = await _get(http, f"{users}?sort=rejections&limit=2&limits=true")
    u3 = standing["users"][0]
    assert u3["user_id"] == "u3" and u3["tier"] is None
    assert u3["quotas"] and all(row["limit"] is None for row in u3["quotas"])  # none set
    (per_minute,) = [r for r in u3["rate_limits"] if r["limit_type"] == "requests_per_minute"]
    assert (per_minute["limit"], per_minute["used"]) == (2, 2)
    async with http.get(f"{url}/ai-orchestration/rate-limits/u3", headers=ADMIN) as response:
        alone = (await response.json())["limits"]  # as one user's shows, but for the clock
    assert [r | {"reset_s": 0} for r in alone] == [r | {"reset_s": 0} for r in u3["rate_limits"]]
    assert "rate_limits" not in (await _get(http, f"{users}?limit=1"))["users"][0]
    beyond = await _get(http, f"{users}?offset=10")
    assert beyond["users"] == [] and beyond["total"] == 5
    for query, named in (("sort=name", "sort"), ("limit=0", "limit"), ("offset=-1", "offset"),
                         ("period=weekly", "period"), ("colour=red", "colour"),
                         ("limits=yes", "limits")):  # fmt: skip
        found = await _get(http, f"{users}?{query}", status=400)
        assert named in found["error"]["message"], found


async def test_cache_savings_and_costs_per_model(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert node.gateway is not None
    url = node.gateway.url
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "save me"}],
            "temperature": 0}  # fmt: skip
    costs = []
    for _ in range(3):  # made once, then twice from the cache
        async with http.post(f"{url}/v1/chat/completions", json=body) as response:
            answer = await response.json()
            costs.append(answer["usage"])
    made_tokens = costs[0]["total_tokens"]

    async def saved() -> Any:
        stats = await _get(http, f"{url}/ai-orchestration/stats")
        return stats if stats["cache"]["saved_tokens"] == 2 * made_tokens else None

    stats = await eventually(saved)
    (row,) = stats["models"]
    assert (row["provider"], row["model"], row["requests"]) == ("openai", "gpt-4o-mini", 3)
    assert row["cost_usd"] == pytest.approx(stats["cost_usd"]) and row["cost_usd"] > 0
    # Each hit saved what the one call cost.
    assert stats["cache"]["saved_usd"] == pytest.approx(2 * row["cost_usd"])
    assert sum(stats["cache"]["hit_rate_by_level"].values()) == pytest.approx(2 / 3, abs=1e-3)


async def test_alerts_are_read_after_an_id_and_a_bad_entry_does_not_break_the_feed(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    limits = msgspec.structs.replace(NO_LIMITS, requests_per_minute=1)
    node = await make_node(providers=("openai",), limits=limits)
    assert node.gateway is not None
    url = node.gateway.url
    alerts = f"{url}/ai-orchestration/alerts"
    empty = await _get(http, alerts)
    assert empty == {"alerts": [], "last_id": ""}
    for n in range(2):
        await _chat(http, url, "ann", f"q{n}")

    async def one() -> Any:
        found = await _get(http, alerts)
        return found if found["alerts"] else None

    first = await eventually(one)
    (alert,) = first["alerts"]
    assert alert["type"] == "rate-limit.exceeded"
    assert (alert["data"]["user_id"], alert["data"]["limit_type"]) == ("ann", "requests_per_minute")
    assert (await _get(http, f"{alerts}?after={first['last_id']}")) == {
        "alerts": [], "last_id": first["last_id"]}  # fmt: skip
    # Someone publishes a mistake on the alert stream: shown as such, the feed goes on.
    await node.bus.redis.xadd(node.bus.names.alerts, {"type": "made.up", "data": "{"})
    await _chat(http, url, "bob", "q")
    await _chat(http, url, "bob", "q2")

    async def two_more() -> Any:
        found = await _get(http, f"{alerts}?after={first['last_id']}")
        return found if len(found["alerts"]) == 2 else None

    later = await eventually(two_more)
    wrong, bob = later["alerts"]
    assert wrong["type"] == "made.up" and "error" in wrong and wrong["data"] == {}
    assert bob["type"] == "rate-limit.exceeded" and bob["data"]["user_id"] == "bob"
    assert later["last_id"] == bob["id"]
    limited = await _get(http, f"{alerts}?limit=1")
    assert [a["id"] for a in limited["alerts"]] == [bob["id"]]  # the latest
    paged = await _get(http, f"{alerts}?after={first['last_id']}&limit=1")
    assert [a["id"] for a in paged["alerts"]] == [wrong["id"]]  # the next one after
    last = f"{2**64 - 1}-{2**64 - 1}"
    assert await _get(http, f"{alerts}?after={last}") == {"alerts": [], "last_id": last}
    for bad in ("after=1-x", "after=%3Cscript%3E", "limit=0", "limit=501",
                f"after={2**64}-0", "after=99999999999999999999-0", "limit=5&limit=6",
                "since=1-0"):  # fmt: skip
        await _get(http, f"{alerts}?{bad}", status=400)


async def test_the_bus_view_shows_groups_pending_and_dead_letters(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    url = node.gateway.url
    assert await _chat(http, url, "ann", "hello") == 200
    names = node.bus.names
    await node.bus.redis.xadd(names.requests, {"type": "no.such.message", "data": "{}"})

    async def dead() -> Any:  # moved, then acknowledged (not at once on a cluster)
        found = await _get(http, f"{url}/ai-orchestration/bus")
        requests = next(s for s in found["streams"] if s["stream"] == names.requests)
        settled = found["dead_letters"]["count"] == 1 and requests["groups"][0]["pending"] == 0
        return found if settled else None

    view = await eventually(dead)
    (letter,) = view["dead_letters"]["latest"]
    assert (letter["stream"], letter["group"]) == (names.requests, "router")
    assert "no.such.message" in letter["reason"] and letter["type"] == "no.such.message"
    streams = {s["stream"]: s for s in view["streams"]}
    assert streams[names.requests]["length"] == 2
    (router,) = streams[names.requests]["groups"]
    assert router["group"] == "router" and router["consumers"] >= 1 and router["pending"] == 0
    assert router["lag"] == 0 and router["idle_ms"] is not None
    groups = {g["group"] for g in streams[names.events]["groups"]}
    assert {"metrics", "limiter", "quota"} <= groups
    assert names.calls("openai") in streams
    # Anyone who can write to Redis can write a dead letter by hand: shown, not a 500.
    await node.bus.redis.xadd(names.dead, {"reason": "<b>by hand</b>", "deliveries": "abc"})
    by_hand = (await _get(http, f"{url}/ai-orchestration/bus"))["dead_letters"]
    assert by_hand["count"] == 2 and by_hand["latest"][0]["deliveries"] == 0
    await _get(http, f"{url}/ai-orchestration/bus?x=1", status=400)


async def test_with_the_prober_off_health_says_so_and_shows_the_breakers(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",))  # health.enabled = false
    assert node.gateway is not None
    found = await _get(http, f"{node.gateway.url}/ai-orchestration/health")
    assert found["status"] == "unknown"
    (row,) = found["providers"]
    assert (row["provider"], row["status"], row["breaker"]) == ("openai", "unknown", "closed")
    assert "health.enabled" in row["why"]
    healthy = await _get(http, f"{node.gateway.url}/ai-orchestration/healthy-providers")
    assert healthy == {"providers": ["openai"]}  # its breaker is closed; nothing says else
    async with http.post(f"{node.gateway.url}/ai-orchestration/circuit-breakers/openai/open",
                         headers=ADMIN, json={}) as response:  # fmt: skip
        assert response.status == 200
    healthy = await _get(http, f"{node.gateway.url}/ai-orchestration/healthy-providers")
    assert healthy == {"providers": []}
