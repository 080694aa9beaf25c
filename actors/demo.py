"""``python run.py demo``: the whole system on the embedded Redis and the provider
simulator, as a short story (or, with ``--json``, one JSON object per line)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec

from bus import Message

from .alerts import Alerts
from .health import HealthProber
from .node import Node
from .providers import AzureConfig, ProviderConfig, ProvidersConfig, Secret
from .providers.simulator import Simulator
from .runtime import (
    BreakerConfig,
    CacheConfig,
    Config,
    GatewayConfig,
    HealthConfig,
    SemanticConfig,
    redis_for,
)

__all__ = ["run_demo"]


class Story:
    """Says what happens: numbered lines, or JSON lines (``step``, ``text``, data)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.started = time.perf_counter()

    def say(self, step: str, text: str, **data: Any) -> None:
        if self.as_json:
            print(json.dumps({"step": step, "text": text, **data}, default=str), flush=True)
        else:
            print(f"[{time.perf_counter() - self.started:5.1f}s] {step:9} {text}", flush=True)


def _providers(url: str) -> ProvidersConfig:
    key = Secret("demo")
    return ProvidersConfig(
        openai=ProviderConfig(api_key=key, base_url=f"{url}/v1", timeout_ms=2_000, max_retries=0),
        azure=AzureConfig(
            api_key=key,
            base_url=url,
            deployment="gpt4o",
            default_model="gpt-4o",
            timeout_ms=2_000,
            max_retries=0,
        ),
        anthropic=ProviderConfig(api_key=key, base_url=url, timeout_ms=2_000, max_retries=0),
        google=ProviderConfig(api_key=key, base_url=url, timeout_ms=2_000, max_retries=0),
    )


def _config(config: Config, simulator: Simulator, token: str) -> Config:
    return msgspec.structs.replace(
        config,
        bus=msgspec.structs.replace(config.bus, namespace=f"demo{secrets.token_hex(3)}"),
        providers=_providers(simulator.url),
        gateway=GatewayConfig(port=0, admin_token=Secret(token)),
        breaker=BreakerConfig(window_size=4, minimum_calls=4, open_ms=1_500, refresh_ms=100),
        health=HealthConfig(interval_ms=400, jitter_ms=0, timeout_ms=1_000),
        cache=CacheConfig(semantic=SemanticConfig(enabled=True, threshold=0.9)),
    )


async def run_demo(config: Config, data_dir: str | None, *, as_json: bool = False) -> None:
    story = Story(as_json)
    async with redis_for(config, data_dir) as url, Simulator(seed=1) as simulator:
        where = "the embedded Redis" if not config.redis_url else "Redis"
        story.say("start", f"{where} at {url}; the provider simulator at {simulator.url}")
        token = secrets.token_urlsafe(24)
        node = Node(_config(config, simulator, token), url, "all")
        await node.start()
        try:
            assert node.gateway is not None
            story.say("start", "every actor runs: gateway, router, limiter, quota keeper, "
                      "cache, a breaker per provider, health prober, metrics, keyring",
                      gateway=node.gateway.url)  # fmt: skip
            async with aiohttp.ClientSession() as http, Alerts(node.bus) as alerts:
                listener = asyncio.create_task(_listen(alerts, story))
                demo = _Demo(story, http, node.gateway.url, {"Authorization": f"Bearer {token}"},
                             simulator, node)  # fmt: skip
                for chapter in (demo.strategies, demo.cache, demo.failure, demo.limits,
                                demo.embedded, demo.stats):  # fmt: skip
                    await chapter()
                await asyncio.sleep(0.2)  # the last alerts reach the listener
                listener.cancel()
        finally:
            await node.stop(timeout=2)
    story.say("end", "stopped cleanly")


async def _listen(alerts: Alerts, story: Story) -> None:
    """Print each alert as the subscriber receives it."""
    async for alert in alerts:
        fields = msgspec.structs.asdict(alert)
        what = (fields.get("limit_type") or fields.get("quota_type") or fields.get("why")
                or fields.get("reason") or "")  # fmt: skip
        who = fields.get("user_id") or fields.get("provider") or ""
        story.say("alert", f"{_tag(alert)} {who} {what}", alert=_tag(alert), who=who)


def _tag(message: Message) -> str:
    return str(type(message).__struct_config__.tag)


class _Demo:
    def __init__(self, story: Story, http: aiohttp.ClientSession, base: str,
                 admin: dict[str, str], simulator: Simulator, node: Node) -> None:  # fmt: skip
        self.say = story.say
        self.http = http
        self.base = base
        self.admin = admin
        self.simulator = simulator
        self.node = node

    async def post(self, body: dict[str, Any], path: str = "/ai-orchestration/generate",
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
        async with self.http.post(self.base + path, json=body, headers=headers) as response:
            return response.status, await response.json()

    async def until(self, check: Callable[[], bool | Awaitable[bool]], seconds: float) -> bool:
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            result = check()
            if result if isinstance(result, bool) else await result:
                return True
            await asyncio.sleep(0.05)
        return False

    async def strategies(self) -> None:
        for strategy in ("performance", "cost", "round_robin", "weighted"):
            ask = {"prompt": f"Name a colour ({strategy})", "model": "balanced",
                   "strategy": strategy, "user_id": "sam"}  # fmt: skip
            status, answer = await self.post(ask)
            chosen = answer["response"]
            self.say("route", f"strategy={strategy} model=balanced -> {status} from "
                     f"{chosen['provider']}/{chosen['model']}, ${chosen['cost_usd']:.6f}",
                     strategy=strategy, provider=chosen["provider"])  # fmt: skip

    async def cache(self) -> None:
        ask = {"prompt": "What is the capital of France?", "model": "gpt-4o", "user_id": "ann"}
        await self.post(ask)
        await self.until(lambda: len(self.node.memory) >= 1, 5)
        _, again = await self.post(ask)
        told = again["orchestration"]
        self.say("cache", f"the same question again -> from the cache ({told['cache_level']}), "
                 f"{told['processing_time_ms']:.1f} ms, $0", level=told["cache_level"])  # fmt: skip
        await self.until(lambda: self.node.vectors is not None and len(self.node.vectors) >= 1, 5)
        _, other = await self.post(ask | {"prompt": "What's the capital of France?"})
        told = other["orchestration"]
        self.say("cache", f"asked in other words -> {told['cache_level']} hit, similarity "
                 f"{told['cache_similarity']}", level=told["cache_level"])  # fmt: skip
        _, negated = await self.post(ask | {"prompt": "What is not the capital of France?",
                                            "cache_threshold": 0.8})  # fmt: skip
        served = "HIT?!" if negated["orchestration"]["cache_hit"] else "miss"
        self.say("cache", f"negated -> not served from the cache (the guard: {served})")
        self.simulator.state.update("openai", {"paused": True})
        joke = ask | {"prompt": "Tell me a joke", "user_id": "bea"}
        twins = [asyncio.create_task(self.post(joke)) for _ in range(5)]
        await self.until(lambda: self.simulator.state.paused_calls["openai"] >= 1, 5)
        await asyncio.sleep(0.3)  # the twins reach the cache and wait
        self.simulator.state.update("openai", {"paused": False})
        levels = [a["orchestration"]["cache_level"] for _s, a in await asyncio.gather(*twins)]
        self.say("cache", f"5 identical requests at once -> one provider call; the others: "
                 f"{sorted(str(level) for level in levels)}", levels=levels)  # fmt: skip

    async def failure(self) -> None:
        self.simulator.state.update("openai", {"error_rate": 1.0})
        self.say("failure", "openai starts failing (the simulator answers 500 or 503)")
        prober = self.node.prober
        assert prober is not None
        statuses = []
        for n in range(4):  # to openai only: its breaker counts the failures
            status, _ = await self.post({"prompt": f"only openai {n}", "model": "openai/gpt-4o",
                                         "use_cache": False, "user_id": "fay"})  # fmt: skip
            statuses.append(status)
        async with self.http.get(f"{self.base}/ai-orchestration/circuit-breakers",
                                 headers=self.admin) as response:  # fmt: skip
            breakers = {b["provider"]: b for b in (await response.json())["circuit_breakers"]}
        self.say("breaker", f"4 requests for openai/gpt-4o -> {statuses}; the openai breaker: "
                 f"{breakers['openai']['state']} ({breakers['openai']['reason']})")  # fmt: skip
        down = await self.until(lambda: prober.is_down("openai"), 5)
        self.say("health", f"the prober: openai {'down' if down else 'not down yet'}")
        _, answer = await self.post({"prompt": "any gpt-4o", "model": "gpt-4o",
                                     "use_cache": False, "user_id": "gus"})  # fmt: skip
        tries = ", ".join(f"{a['provider']} {a['outcome']}"
                          for a in answer["orchestration"]["attempts"])  # fmt: skip
        self.say("fallback", f"model=gpt-4o -> answered by {answer['response']['provider']} "
                 f"after: {tries}")  # fmt: skip
        # gpt-4o-mini has no Azure deployment here: its fallback chain (its tier's other
        # vendors) crosses to another vendor's model.
        _, answer = await self.post({"prompt": "any gpt-4o-mini", "model": "gpt-4o-mini",
                                     "use_cache": False, "user_id": "gus"})  # fmt: skip
        tries = ", ".join(f"{a['provider']}/{a['model']} {a['outcome']}"
                          for a in answer["orchestration"]["attempts"])  # fmt: skip
        self.say("fallback", f"model=gpt-4o-mini -> answered by {answer['response']['provider']}"
                 f"/{answer['response']['model']}, down its fallback chain: {tries}")  # fmt: skip
        self.simulator.state.update("openai", {"error_rate": 0.0})
        healthy = await self.until(lambda: not prober.is_down("openai"), 5)
        await self.post({}, "/ai-orchestration/circuit-breakers/openai/reset", self.admin)
        self.say("recovery", f"openai answers again: the prober says "
                 f"{'healthy' if healthy else 'still down'}; its breaker reset")  # fmt: skip

    async def limits(self) -> None:
        """One user, dave: a burst refused, then (once the burst window has passed) his
        daily quota used up."""
        admin = f"{self.base}/ai-orchestration"
        # A short burst window, so that the story need not wait ten seconds.
        async with self.http.put(f"{admin}/rate-limits/dave/config", headers=self.admin,
                                 json={"burst_window_ms": 1_000}) as r:  # fmt: skip
            assert r.status == 200
        async with self.http.put(f"{admin}/quotas/dave/config", headers=self.admin,
                                 json={"daily_request_limit": 6}) as r:  # fmt: skip
            assert r.status == 200
        statuses = []
        for n in range(7):
            status, body = await self.post({"prompt": f"quick {n}", "user_id": "dave",
                                            "use_cache": False})  # fmt: skip
            statuses.append(status)
        self.say("limits", f"7 requests in a row from dave -> {statuses}: "
                 f"{body['error']['message']}", statuses=statuses)  # fmt: skip
        await asyncio.sleep(1.1)  # the burst window passes
        statuses = []
        for n in range(2):
            status, body = await self.post({"prompt": f"later {n}", "user_id": "dave",
                                            "use_cache": False})  # fmt: skip
            statuses.append(status)
        self.say("quota", f"dave's daily quota is 6: 2 more requests -> {statuses}: "
                 f"{body['error']['message']}", statuses=statuses)  # fmt: skip

    async def embedded(self) -> None:
        # The health prober in a three-line ops script, with no bus and no server:
        prober = HealthProber.from_config(Config(providers=_providers(self.simulator.url)))
        report = await prober.probe_once()
        await prober.stop()
        self.say("embedded", "HealthProber.from_config(...).probe_once() -> "
                 + ", ".join(f"{p.provider} {p.status}" for p in report.providers),
                 status=report.status)  # fmt: skip

    async def stats(self) -> None:
        await asyncio.sleep(0.8)  # the last events reach the metrics (written every 0.5 s)
        async with self.http.get(f"{self.base}/ai-orchestration/stats") as response:
            stats = await response.json()
        self.say("stats", f"requests {stats['requests']}, cache hit rate "
                 f"{stats['cache']['hit_rate']:.0%}, rejections {stats['rejections']}",
                 stats=stats)  # fmt: skip
        for provider, row in stats["providers"].items():
            self.say("stats", f"  {provider:9} {row['calls']:3d} calls, error rate "
                     f"{row['error_rate']:.0%}, p50 {row['latency_ms']['p50']} ms, "
                     f"breaker {row['breaker']}, health {row['health']}")  # fmt: skip
