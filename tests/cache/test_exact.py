"""The exact cache through the whole path: L1 and L2 hits, scopes, what is never kept,
streams, warming, clearing, charging and coalescing (real Redis, HTTP, simulator)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from actors.providers.simulator import Simulator
from actors.runtime.config import LIMIT_FIELDS, AdmissionConfig, CacheConfig, LimitsConfig
from tests.conftest import eventually
from tests.request_path.conftest import ADMIN, MakeNode

ON = CacheConfig()


async def _generate(http: aiohttp.ClientSession, url: str, **body: Any) -> dict[str, Any]:
    async with http.post(f"{url}/ai-orchestration/generate", json=body) as response:
        payload = await response.json()
        assert response.status == 200, payload
        return payload  # type: ignore[no-any-return]


async def _kept(node: Any, count: int) -> None:
    """Wait until ``count`` answers are in the node's memory (stored off the path)."""
    await eventually(lambda: len(node.memory) >= count)


def _calls(simulator: Simulator) -> int:
    return sum(simulator.state.calls.values())


def _level(answer: dict[str, Any]) -> str | None:
    orchestration = answer["orchestration"]
    assert orchestration["cache_hit"] == (orchestration["cache_level"] is not None)
    return orchestration["cache_level"]  # type: ignore[no-any-return]


async def test_a_repeated_request_is_answered_from_memory_then_from_redis(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(cache=ON)
    assert node.gateway is not None
    first = await _generate(http, node.gateway.url, prompt="What is a cache?", model="gpt-4o")
    assert _level(first) is None and _calls(simulator) == 1
    await _kept(node, 1)
    second = await _generate(http, node.gateway.url, prompt="What is a cache?", model="gpt-4o")
    assert _level(second) == "l1"
    assert second["response"]["content"] == first["response"]["content"]
    assert second["response"]["cost_usd"] == 0
    assert _calls(simulator) == 1
    # Another process (its memory empty) finds the answer in Redis, then in its memory.
    await node.stop()
    other = await make_node(cache=ON)
    assert other.gateway is not None
    third = await _generate(http, other.gateway.url, prompt="What is a cache?", model="gpt-4o")
    assert _level(third) == "l2"
    fourth = await _generate(http, other.gateway.url, prompt="What is a cache?", model="gpt-4o")
    assert _level(fourth) == "l1"
    assert third["response"]["content"] == first["response"]["content"]
    assert _calls(simulator) == 1


async def test_what_changes_the_answer_changes_the_key(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(cache=ON)
    assert node.gateway is not None
    url = node.gateway.url
    question = {"role": "user", "content": "And the capital?"}
    base: dict[str, Any] = {"messages": [{"role": "system", "content": "Be brief."}, question]}
    await _generate(http, url, **base, model="gpt-4o")
    await _kept(node, 1)
    # The same last message after a different conversation is a different request.
    other = {"messages": [{"role": "system", "content": "Be long."}, question]}
    assert _level(await _generate(http, url, **other, model="gpt-4o")) is None
    for changed in ({"temperature": 0.2}, {"max_tokens": 50}, {"stop": ["."]},
                    {"model": "claude-3-haiku"}):  # fmt: skip
        assert _level(await _generate(http, url, **(base | {"model": "gpt-4o"} | changed))) is None
    # An alias is the model it names: the same entry.
    catalog = node.catalog
    alias = next(a for a, m in catalog.aliases.items() if m == "gpt-4o")
    assert _level(await _generate(http, url, **base, model=alias)) == "l1"
    assert _calls(simulator) == 6


async def test_an_answer_is_served_to_its_user_only_unless_shared(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(cache=ON)
    assert node.gateway is not None
    url = node.gateway.url
    await _generate(http, url, prompt="my secret plan", user_id="ann")
    await _kept(node, 1)
    assert _level(await _generate(http, url, prompt="my secret plan", user_id="bob")) is None
    assert _level(await _generate(http, url, prompt="my secret plan", user_id="ann")) == "l1"
    assert _calls(simulator) == 2
    await node.stop()
    shared = await make_node(cache=CacheConfig(scope="shared"))
    assert shared.gateway is not None
    await _generate(http, shared.gateway.url, prompt="public fact", user_id="ann")
    await _kept(shared, 1)
    answer = await _generate(http, shared.gateway.url, prompt="public fact", user_id="bob")
    assert _level(answer) == "l1"


async def test_use_cache_and_the_temperature_threshold_bypass_it(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(cache=CacheConfig(max_temperature=0.5))
    assert node.gateway is not None
    url = node.gateway.url
    for _ in range(2):
        assert _level(await _generate(http, url, prompt="vary", temperature=0.9)) is None
        assert _level(await _generate(http, url, prompt="off", use_cache=False)) is None
        # A cached answer has no log probabilities: such a request never uses the cache.
        scored = await _generate(http, url, prompt="scores", model="gpt-4o", logprobs=True)
        assert _level(scored) is None and scored["response"]["logprobs"]
    assert _calls(simulator) == 6
    await node.stop()
    off = await make_node(cache=CacheConfig(default=False))
    assert off.gateway is not None
    await _generate(http, off.gateway.url, prompt="opt in", use_cache=True)
    await _kept(off, 1)
    assert _level(await _generate(http, off.gateway.url, prompt="opt in", use_cache=True)) == "l1"
    assert _level(await _generate(http, off.gateway.url, prompt="opt in")) is None


async def test_failures_cut_streams_and_unfinished_answers_are_not_kept(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",), cache=ON,
                           provider_overrides={"max_retries": 0})  # fmt: skip
    assert node.gateway is not None
    url = node.gateway.url
    simulator.state.update("openai", {"error_rate": 1.0})
    async with http.post(f"{url}/ai-orchestration/generate", json={"prompt": "fails"}) as r:
        assert r.status == 503
    simulator.state.update("openai", {"error_rate": 0.0})
    assert _level(await _generate(http, url, prompt="fails")) is None  # called, not cached
    # Cut short by max_tokens: finish_reason "length", not kept.
    cut = await _generate(http, url, prompt="a long answer please " * 5, max_tokens=2)
    assert cut["response"]["finish_reason"] == "length"
    again = await _generate(http, url, prompt="a long answer please " * 5, max_tokens=2)
    assert _level(again) is None
    # A stream cut midway is not kept either.
    simulator.state.update("openai", {"cut_rate": 1.0})
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        async for _chunk in await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "cut me"}], stream=True
        ):
            pass
    simulator.state.update("openai", {"cut_rate": 0.0})
    answer = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "cut me"}]
    )
    assert answer.headers["X-Cache"] == "MISS"
    await client.close()


async def test_a_stream_is_stored_and_replayed_with_usage(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(cache=ON)
    assert node.gateway is not None
    client = openai.AsyncOpenAI(base_url=f"{node.gateway.url}/v1", api_key="x", max_retries=0)
    messages: Any = [{"role": "user", "content": "Tell me about streams and caches."}]

    async def stream() -> tuple[str, Any, str]:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=messages, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        text, usage = [], None
        async for chunk in raw.parse():
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
            if chunk.usage is not None:
                usage = chunk.usage
        return "".join(text), usage, raw.headers["X-Cache"]

    first, first_usage, first_cache = await stream()
    assert first_cache == "MISS"
    await eventually(lambda: len(node.memory) == 1)  # stored off the request path
    second, second_usage, second_cache = await stream()
    assert second_cache == "HIT" and second == first
    assert second_usage is not None and second_usage.total_tokens == first_usage.total_tokens
    # The same request without streaming is the same entry.
    plain = await client.chat.completions.with_raw_response.create(model="gpt-4o",
                                                                   messages=messages)  # fmt: skip
    assert plain.headers["X-Cache"] == "HIT" and plain.headers["X-Cache-Level"] == "l1"
    assert plain.parse().choices[0].message.content == first
    # X-Cache: no-cache asks the provider.
    fresh = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=messages, extra_headers={"X-Cache": "no-cache"}
    )
    assert fresh.headers["X-Cache"] == "MISS"
    assert _calls(simulator) == 2
    await client.close()


async def test_warm_then_hit_clear_by_user_and_model_and_stats(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(cache=ON)
    assert node.gateway is not None
    url = node.gateway.url
    entries = [
        {"prompt": "What is our refund policy?", "response": "30 days.", "model": "gpt-4o",
         "shared": True},
        {"messages": [{"role": "user", "content": "my plan"}], "response": "Plan B.",
         "model": "gpt-4o", "user_id": "ann", "ttl": 600},
        {"prompt": "haiku?", "response": "Short poem.", "model": "claude-3-haiku",
         "user_id": "ann"},
    ]  # fmt: skip
    async with http.post(f"{url}/ai-orchestration/cache/warm", json={"entries": entries},
                         headers=ADMIN) as response:  # fmt: skip
        report = await response.json()
        assert response.status == 200, report
        assert report["warmed"] == 3 and report["entries"] == 3
    # A fresh process (no memory) finds them in Redis.
    await node.stop()
    other = await make_node(cache=ON)
    assert other.gateway is not None
    url = other.gateway.url
    shared = await _generate(http, url, prompt="What is our refund policy?", model="gpt-4o",
                             user_id="zed")  # fmt: skip
    assert _level(shared) == "l2" and shared["response"]["content"] == "30 days."
    mine = await _generate(http, url, messages=entries[1]["messages"], model="gpt-4o",
                           user_id="ann")  # fmt: skip
    assert mine["response"]["content"] == "Plan B."
    theirs = await _generate(http, url, messages=entries[1]["messages"], model="gpt-4o",
                             user_id="bob")  # fmt: skip
    assert _level(theirs) is None
    assert _calls(simulator) == 1
    # Clearing one model's entries, then one user's, everywhere (memories too).
    async with http.post(f"{url}/ai-orchestration/cache/clear", json={"model": "claude-3-haiku"},
                         headers=ADMIN) as response:  # fmt: skip
        assert (await response.json())["cleared"] == 1
    haiku = await _generate(http, url, prompt="haiku?", model="claude-3-haiku", user_id="ann")
    assert _level(haiku) is None
    async with http.post(f"{url}/ai-orchestration/cache/clear", json={"user_id": "ann"},
                         headers=ADMIN) as response:  # fmt: skip
        assert (await response.json())["cleared"] >= 1
    # Left: the shared entry and bob's answer.
    await eventually(lambda: len(other.memory) == 2)
    again = await _generate(http, url, messages=entries[1]["messages"], model="gpt-4o",
                            user_id="ann")  # fmt: skip
    assert _level(again) is None
    async with http.get(f"{url}/ai-orchestration/cache/stats", headers=ADMIN) as response:
        stats = await response.json()
    assert stats["hits"]["l2"] >= 2 and stats["misses"] >= 3
    assert 0 < stats["hit_rate"] < 1 and stats["entries"] >= 1 and stats["bytes"] > 0


async def test_a_bad_warm_batch_is_refused_whole_and_names_the_entry(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(cache=ON)
    assert node.gateway is not None
    url = node.gateway.url
    good = {"prompt": "fine", "response": "ok", "model": "gpt-4o"}
    for bad, named in (
        ({"prompt": "no answer", "model": "gpt-4o"}, "$.entries[1]"),
        ({"prompt": "x", "response": "y", "model": "gpt-4o", "ttl": -1}, "$.entries[1].ttl"),
        ({"prompt": "x", "response": "y", "model": "no-such-model"}, "entries[1].model"),
        ({"response": "y", "model": "gpt-4o"}, "prompt"),
    ):
        async with http.post(f"{url}/ai-orchestration/cache/warm",
                             json={"entries": [good, bad]}, headers=ADMIN) as response:  # fmt: skip
            body = await response.json()
            assert response.status == 400, body
            assert named in body["error"]["message"], body
    async with http.get(f"{url}/ai-orchestration/cache/stats", headers=ADMIN) as response:
        assert (await response.json())["entries"] == 0  # nothing of a refused batch
    async with http.get(f"{url}/ai-orchestration/cache/stats") as response:
        assert response.status == 401  # an admin endpoint


@pytest.mark.parametrize("counted", [True, False])
async def test_a_hit_counts_as_a_request_without_tokens_as_configured(
    make_node: MakeNode, http: aiohttp.ClientSession, counted: bool
) -> None:
    limits = LimitsConfig(
        **(
            dict.fromkeys(LIMIT_FIELDS)
            | {"requests_per_minute": 1_000, "tokens_per_minute": 1_000_000}
        )
    )
    admission = AdmissionConfig(timeout_ms=10_000, count_cache_hits=counted)
    node = await make_node(cache=ON, limits=limits, admission=admission)
    assert node.gateway is not None
    url = node.gateway.url
    first = await _generate(http, url, prompt="count me", user_id="carl")
    await _kept(node, 1)
    assert _level(await _generate(http, url, prompt="count me", user_id="carl")) == "l1"
    tokens = first["response"]["usage"]["total_tokens"]

    async def settled() -> bool:
        async with http.get(f"{url}/ai-orchestration/rate-limits/carl", headers=ADMIN) as r:
            rows = {row["limit_type"]: row for row in (await r.json())["limits"]}
        return (rows["requests_per_minute"]["used"], rows["tokens_per_minute"]["used"]) == (
            2 if counted else 1,
            tokens,
        )

    await eventually(settled)  # settled off the path, after each answer


async def test_identical_requests_in_flight_call_the_provider_once(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    first = await make_node(cache=ON)
    second = await make_node(cache=ON)  # another process on the same Redis
    assert first.gateway is not None and second.gateway is not None
    simulator.state.update("openai", {"paused": True})
    urls = [first.gateway.url, second.gateway.url]

    async def ask(index: int) -> dict[str, Any]:
        return await _generate(http, urls[index % 2], prompt="the same question",
                               model="gpt-4o")  # fmt: skip

    leader = asyncio.create_task(ask(0))
    await eventually(lambda: simulator.state.paused_calls["openai"] == 1)
    followers = [asyncio.create_task(ask(i)) for i in range(1, 20)]
    waiting = _waiting(first, second)
    await eventually(lambda: waiting(19))
    simulator.state.update("openai", {"paused": False})
    answers = await asyncio.gather(leader, *followers)
    assert _calls(simulator) == 1
    assert len({a["response"]["content"] for a in answers}) == 1
    assert [_level(a) for a in answers[1:]] == ["coalesced"] * 19


def _waiting(*nodes: Any) -> Any:
    """A check: do ``count`` requests wait for a leader (in Redis)?"""

    async def check(count: int) -> bool:
        r = nodes[0].bus.redis
        keys = [k async for k in r.scan_iter(match=f"{nodes[0].bus.names.ns}:cache:*:waiting")]
        return sum([await r.llen(k) for k in keys]) == count

    return check


async def test_when_the_leader_fails_a_follower_takes_over(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",), cache=ON,
                           provider_overrides={"max_retries": 0})  # fmt: skip
    assert node.gateway is not None
    url = node.gateway.url
    # The leader's call is held, and will fail; the calls after it will not.
    simulator.state.update("openai", {"paused": True, "error_rate": 1.0})

    async def ask() -> tuple[int, dict[str, Any]]:
        body = {"prompt": "who leads?", "model": "gpt-4o"}
        async with http.post(f"{url}/ai-orchestration/generate", json=body) as response:
            return response.status, await response.json()

    leader = asyncio.create_task(ask())
    await eventually(lambda: simulator.state.paused_calls["openai"] == 1)
    followers = [asyncio.create_task(ask()) for _ in range(4)]
    waiting = _waiting(node)
    await eventually(lambda: waiting(4))
    simulator.state.update("openai", {"paused": False, "error_rate": 0.0})
    status, _failed = await leader
    assert status == 503
    answers = await asyncio.gather(*followers)
    assert all(status == 200 for status, _ in answers)
    levels = sorted(str(_level(body)) for _, body in answers)
    assert levels == ["None", "coalesced", "coalesced", "coalesced"]  # one called again
    assert _calls(simulator) == 2


async def test_entries_expire_after_their_ttl_per_model(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(cache=CacheConfig(model_ttl_s={"gpt-4o": 1.0}))
    assert node.gateway is not None
    url = node.gateway.url
    await _generate(http, url, prompt="short lived", model="gpt-4o")
    await _generate(http, url, prompt="long lived", model="claude-3-haiku")
    await _kept(node, 2)
    redis = node.bus.redis
    ttls = {}
    async for key in redis.scan_iter(match=f"{node.bus.names.ns}:cache:{{*"):
        ttls[key] = await redis.pttl(key)
    assert sorted(t <= 1_000 for t in ttls.values()) == [False, True]
    await eventually(lambda: _gone(node, 1))
    assert _level(await _generate(http, url, prompt="short lived", model="gpt-4o")) is None
    assert _level(await _generate(http, url, prompt="long lived", model="claude-3-haiku")) == "l1"
    assert _calls(simulator) == 3


async def _gone(node: Any, left: int) -> bool:
    redis = node.bus.redis
    keys = [k async for k in redis.scan_iter(match=f"{node.bus.names.ns}:cache:{{*")]
    return len(keys) == left


async def test_a_leader_refused_at_admission_hands_its_lead_on(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    limits = LimitsConfig(**(dict.fromkeys(LIMIT_FIELDS) | {"requests_per_minute": 1}))
    node = await make_node(cache=ON, limits=limits)
    assert node.gateway is not None
    url = node.gateway.url
    await _generate(http, url, prompt="first", user_id="zoe")
    # Refused by the limiter, after the cache's lookup (the same round trip) made it
    # the leader of its key.
    async with http.post(f"{url}/ai-orchestration/generate",
                         json={"prompt": "refused", "user_id": "zoe"}) as response:  # fmt: skip
        assert response.status == 429
    async with http.put(f"{url}/ai-orchestration/rate-limits/zoe/config", headers=ADMIN,
                        json={"requests_per_minute": 100}) as response:  # fmt: skip
        assert response.status == 200
    # The same request again does not wait for a leader that will never answer: a
    # short deadline would pass (504) if it did.
    again = await _generate(http, url, prompt="refused", user_id="zoe", timeout_ms=5_000)
    assert _level(again) in (None, "coalesced")
    assert _calls(simulator) == 2
