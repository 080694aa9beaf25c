"""The demo: the bus end to end, then the four provider adapters on the simulator."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import openai

from bus import Bus, Message

from .alerts import Alerts
from .messages import CODEC, Ping
from .node import Node
from .providers import (
    ADAPTER_CLASSES,
    DEFAULT_MODELS,
    AzureConfig,
    Catalog,
    ChatMessage,
    ProviderConfig,
    ProviderError,
    ProviderRequest,
    ProvidersConfig,
    Secret,
    adapter_class,
)
from .providers.simulator import Simulator
from .runtime import BreakerConfig, Config, EchoActor, GatewayConfig, Supervisor, redis_for

__all__ = ["run_demo"]


async def run_demo(config: Config, data_dir: str | None, rounds: int) -> None:
    async with redis_for(config, data_dir) as url:
        where = "embedded Redis at " + url if not config.redis_url else "Redis at " + url
        print(f"1. bus on the {where}")
        async with Bus(url, CODEC, config.bus) as bus:
            await _bus_demo(bus, rounds)
        async with Simulator(seed=1) as simulator:
            await _providers_demo(simulator)
            await _system_demo(config, url, simulator)
    print("stopped cleanly")


async def _bus_demo(bus: Bus, rounds: int) -> None:
    supervisor = Supervisor([lambda: EchoActor(bus, concurrency=64)])
    await supervisor.start()
    stream = bus.names.echo
    print(f"2. echo actor consuming {stream} as {bus.node}")

    latencies = []
    for n in range(rounds):
        start = time.perf_counter()
        await bus.ask(stream, Ping(payload=str(n)), timeout=5)
        latencies.append((time.perf_counter() - start) * 1e6)
    q = statistics.quantiles(latencies, n=100)
    print(f"3. {rounds} asks one at a time: p50 {q[49]:.0f} us, p99 {q[98]:.0f} us")

    start = time.perf_counter()
    await asyncio.gather(
        *(bus.ask(stream, Ping(payload=str(n)), timeout=10) for n in range(rounds * 4))
    )
    rate = rounds * 4 / (time.perf_counter() - start)
    print(f"4. {rounds * 4} asks all at once: {rate:,.0f} round trips/s")

    poison = await bus.redis.xadd(stream, {"type": "ping", "data": "{not json"})
    reply = await bus.ask(stream, Ping(payload="after the poison"), timeout=5)
    dead: Any = await bus.redis.xrevrange(bus.names.dead, count=20)
    reason = next(f[b"reason"] for _i, f in dead if f[b"source_id"] == poison)
    print(f"5. a poison entry went to {bus.names.dead}: {reason.decode()!r};")
    print(f"   the actor kept going and answered {reply!r}")
    await supervisor.stop(timeout=5)


async def _providers_demo(simulator: Simulator) -> None:
    catalog = Catalog()
    print(f"6. provider simulator at {simulator.url}; each adapter through its own SDK:")
    adapters = {name: _adapter(name, simulator.url, catalog) for name in ADAPTER_CLASSES}
    request = ProviderRequest(
        messages=[
            ChatMessage(role="system", content="Answer in one sentence."),
            ChatMessage(role="user", content="Why does an LLM gateway need a breaker?"),
        ],
        max_tokens=60,
    )
    try:
        for name, adapter in adapters.items():
            done = await adapter.generate(request)
            chunks = [chunk async for chunk in adapter.stream(request)]
            u = done.usage
            print(
                f"   {name:9} {done.model:22} {u.input_tokens}+{u.output_tokens} tokens "
                f"${done.cost_usd:.6f} {done.latency_ms:5.1f} ms; streamed "
                f"{len(chunks) - 1} deltas, then {chunks[-1].finish_reason!r} with usage"
            )
        print("   and when providers misbehave, typed errors:")
        simulator.state.update("openai", {"rate_limit_rate": 1, "retry_after_s": 7})
        simulator.state.update("anthropic", {"cut_rate": 1})
        simulator.state.update("google", {"hang_rate": 1})
        quick = _adapter("google", simulator.url, catalog, timeout_ms=300)
        await _show("openai, 429", adapters["openai"].generate(request))
        await _show("anthropic, cut stream", _drain(adapters["anthropic"].stream(request)))
        await _show("google, hang (300 ms timeout)", quick.generate(request))
        await quick.close()
    finally:
        for adapter in adapters.values():
            await adapter.close()
        simulator.state.reset()


def _adapter(name: str, base: str, catalog: Catalog, timeout_ms: int = 10_000) -> Any:
    key = Secret(f"demo-{name}-key")
    config: ProviderConfig
    if name == "azure":
        config = AzureConfig(api_key=key, base_url=base, deployment="demo", timeout_ms=timeout_ms)
    else:
        url = base + "/v1" if name == "openai" else base
        config = ProviderConfig(api_key=key, base_url=url, timeout_ms=timeout_ms)
    return adapter_class(name)(config, catalog, DEFAULT_MODELS[name])


async def _show(label: str, call: Any) -> None:
    try:
        await call
    except ProviderError as error:
        extra = f", retry after {error.retry_after:g}s" if hasattr(error, "retry_after") else ""
        print(f"   {label:30} -> {type(error).__name__}: {error.message}{extra}")
    else:
        print(f"   {label:30} -> no error?")


async def _drain(stream: AsyncIterator[Any]) -> None:
    async for _chunk in stream:
        pass


async def _system_demo(config: Config, redis_url: str, simulator: Simulator) -> None:
    """The whole system: gateway, router and one breaker per provider, on the simulator."""
    providers = ProvidersConfig(
        openai=ProviderConfig(api_key=Secret("demo"), base_url=f"{simulator.url}/v1",
                              timeout_ms=2_000),
        azure=AzureConfig(api_key=Secret("demo"), base_url=simulator.url, deployment="gpt4o",
                          default_model="gpt-4o", timeout_ms=2_000),
        anthropic=ProviderConfig(api_key=Secret("demo"), base_url=simulator.url, timeout_ms=2_000),
        google=ProviderConfig(api_key=Secret("demo"), base_url=simulator.url, timeout_ms=2_000),
    )  # fmt: skip
    token = secrets.token_urlsafe(32)  # the demo's own admin token
    admin = {"Authorization": f"Bearer {token}"}
    demo = msgspec.structs.replace(
        config,
        bus=msgspec.structs.replace(config.bus, namespace="demo"),
        providers=providers,
        gateway=GatewayConfig(port=0, admin_token=Secret(token)),
        breaker=BreakerConfig(window_size=6, minimum_calls=6, open_ms=2_000),
    )
    node = Node(demo, redis_url, "all")
    await node.start()
    assert node.gateway is not None
    base = node.gateway.url
    print(f"7. the whole system on the simulator, gateway at {base}:")
    try:
        async with aiohttp.ClientSession() as http:
            body = {"prompt": "Why does an LLM gateway need a breaker?", "model": "fast",
                    "user_id": "ann"}  # fmt: skip
            status, answer = await _post(http, f"{base}/ai-orchestration/generate", body)
            chosen = answer["response"]
            print(f"   POST /ai-orchestration/generate model=fast -> {status} from "
                  f"{chosen['provider']}/{chosen['model']}, ${chosen['cost_usd']:.6f}, "
                  f"{answer['orchestration']['processing_time_ms']:.1f} ms")  # fmt: skip
            status, again = await _post(http, f"{base}/ai-orchestration/generate", body)
            told = again["orchestration"]
            print(f"   the same request again -> {status} from the cache ({told['cache_level']}), "
                  f"${again['response']['cost_usd']:.6f}, "
                  f"{told['processing_time_ms']:.1f} ms")  # fmt: skip
            for name in ("openai", "azure", "anthropic", "google"):  # tokens over time
                simulator.state.update(name, {"chunk_delay_ms": 3})
            await _sdk_demo(base)
            simulator.state.update("openai", {"error_rate": 1})
            status, answer = await _post(
                http,
                f"{base}/ai-orchestration/generate",
                {"prompt": "hi", "model": "gpt-4o", "user_id": "bob"},
            )
            tries = ", ".join(
                f"{a['provider']} {a['outcome']}" for a in answer["orchestration"]["attempts"]
            )
            print(f"   openai failing (500s), model=gpt-4o -> {status} by "
                  f"{answer['response']['provider']} after: {tries}")  # fmt: skip
            for n in range(3):
                await _post(http, f"{base}/ai-orchestration/generate",
                            {"prompt": f"again {n}", "model": "openai/gpt-4o",
                             "user_id": "bob"})  # fmt: skip
            breakers_url = f"{base}/ai-orchestration/circuit-breakers"
            async with http.get(breakers_url, headers=admin) as response:
                breakers = (await response.json())["circuit_breakers"]
            opened = next(b for b in breakers if b["provider"] == "openai")
            print(f"   the openai breaker: {opened['state']} ({opened['reason']})")
            for name in ("azure", "anthropic", "google"):
                simulator.state.update(name, {"error_rate": 1})
            status, failed = await _post(http, f"{base}/ai-orchestration/generate",
                                         {"prompt": "hi", "user_id": "carol"})  # fmt: skip
            print(f"   every provider failing -> {status} {failed['error']['type']}")
            status, fallback = await _post(
                http,
                f"{base}/ai-orchestration/generate-with-fallback",
                {"prompt": "hi", "user_id": "carol"},
            )
            print(f"   ... and /generate-with-fallback -> {status}, fallback="
                  f"{fallback['fallback']}: {fallback['response']['content'][:48]}...")  # fmt: skip
            simulator.state.reset()
            for name in node.enabled:
                await _post(http, f"{breakers_url}/{name}/reset", {}, headers=admin)
            await _limits_demo(http, base, node, admin)
    finally:
        await node.stop(timeout=2)


async def _limits_demo(
    http: aiohttp.ClientSession, base: str, node: Node, admin: dict[str, str]
) -> None:
    """Rate limits and quotas with the default limits, and the alerts they raise."""
    print("8. limits and quotas (the defaults: bursts of more than 5 requests in 10 s, ...):")
    async with Alerts(node.bus) as alerts:
        statuses = []
        for n in range(7):
            async with http.post(
                f"{base}/ai-orchestration/generate",
                json={"prompt": f"quick {n}", "user_id": "dave"},
            ) as response:
                statuses.append(response.status)
                headers, refused = response.headers, await response.json()
        print(f"   7 requests in a row from dave -> {statuses}; the last: "
              f"{refused['error']['type']} ({refused['error']['message']}), Retry-After "
              f"{headers['Retry-After']} s, X-RateLimit-Remaining-Burst "
              f"{headers['X-RateLimit-Remaining-Burst']}")  # fmt: skip
        async with http.put(
            f"{base}/ai-orchestration/quotas/erin/config",
            json={"daily_request_limit": 2},
            headers=admin,
        ) as response:
            assert response.status == 200
        statuses = []
        for n in range(3):
            async with http.post(
                f"{base}/ai-orchestration/generate", json={"prompt": f"q{n}", "user_id": "erin"}
            ) as response:
                statuses.append(response.status)
                refused = await response.json()
        print(f"   erin's daily quota set to 2 requests (PUT .../quotas/erin/config); 3 "
              f"requests -> {statuses}: {refused['error']['message']}")  # fmt: skip
        async with http.get(f"{base}/ai-orchestration/quotas/erin", headers=admin) as response:
            rows = {r["quota_type"]: r for r in (await response.json())["quotas"]}
        daily = rows["daily_requests"]
        print(f"   GET .../quotas/erin: daily_requests {daily['used']:g} of "
              f"{daily['limit']:g}, resets at {daily['resets_at']}")  # fmt: skip
        seen: list[Message] = []
        while len(seen) < 4:
            try:
                seen.append(await asyncio.wait_for(anext(alerts), 2))
            except TimeoutError:
                break
        for alert in seen:
            fields = msgspec.structs.asdict(alert)
            what = fields.get("limit_type") or fields.get("quota_type") or ""
            print(
                f"   alert on demo:alerts: {node.bus.codec.tag(type(alert))} "
                f"{fields['user_id']} {what} {fields['current']:g}/{fields['limit']:g}"
            )


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def _sdk_demo(base: str) -> None:
    client = openai.AsyncOpenAI(api_key="any", base_url=f"{base}/v1", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="smart",
            messages=[{"role": "user", "content": "Stream me a sentence."}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = 0, None
        async for chunk in stream:
            pieces += bool(chunk.choices and chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        tokens = f"{usage.prompt_tokens}+{usage.completion_tokens}" if usage else "?"
        print(f"   the openai SDK, /v1/chat/completions stream=True model=smart -> {pieces} "
              f"chunks, then usage {tokens} tokens")  # fmt: skip
    finally:
        await client.close()
