"""The demo: the bus end to end, then the four provider adapters on the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

from bus import Bus, EmbeddedRedis

from ._supervisor import Supervisor
from .config import Config
from .echo import EchoActor
from .messages import CODEC, Ping
from .providers import (
    ADAPTER_CLASSES,
    AzureConfig,
    Catalog,
    ChatMessage,
    ProviderConfig,
    ProviderError,
    ProviderRequest,
    Secret,
    adapter_class,
)
from .providers._config import DEFAULT_MODELS
from .providers.simulator import Simulator

__all__ = ["run_demo"]


@contextlib.asynccontextmanager
async def redis_for(config: Config, data_dir: str | None) -> AsyncIterator[str]:
    """The Redis to use: ``REDIS_URL`` (or ``redis_url`` in the config), else an embedded one."""
    if config.redis_url:
        yield config.redis_url
        return
    with EmbeddedRedis(data_dir=data_dir) as server:
        yield server.url


async def run_demo(config: Config, data_dir: str | None, rounds: int) -> None:
    async with redis_for(config, data_dir) as url:
        where = "embedded Redis at " + url if not config.redis_url else "Redis at " + url
        print(f"1. bus on the {where}")
        async with Bus(url, CODEC, config.bus) as bus:
            await _bus_demo(bus, rounds)
    await _providers_demo()
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


async def _providers_demo() -> None:
    catalog = Catalog()
    async with Simulator(seed=1) as simulator:
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
            print("7. and when providers misbehave, typed errors:")
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
