"""A worker process that fires many requests at once, for the exactness tests.

python -m tests.limits._hammer '<json>' with: url, ns, simulator, count, user,
limits and quota (config tables), skew_s (this process's clock is off by that much).

It starts a node (limiter, quota keeper, router, breaker), prints "ready", waits
for the key ``{ns}:go``, sends ``count`` requests at once and prints a JSON line:
{"admitted": n, "refused": {kind: n}, "usage": [total tokens of each answer],
"clock_off_s": how far its clock is from the Redis server's}.
"""

from __future__ import annotations

import json
import sys
import time

_settings = json.loads(sys.argv[1])
if _settings.get("skew_s"):
    # A process whose clock is wrong: everything that reads the wall clock is off.
    _real_time, _real_time_ns = time.time, time.time_ns
    _skew = float(_settings["skew_s"])
    time.time = lambda: _real_time() + _skew
    time.time_ns = lambda: _real_time_ns() + int(_skew * 1e9)

import asyncio  # noqa: E402
import collections  # noqa: E402

from actors.client import Client, GenerateError, GenerateRequest  # noqa: E402
from actors.node import Node  # noqa: E402
from actors.runtime._logging import configure_logging  # noqa: E402
from actors.runtime.config import (  # noqa: E402
    CacheConfig,
    Config,
    GatewayConfig,
    HealthConfig,
    LimitsConfig,
    QuotaConfig,
)
from tests._cluster import async_client  # noqa: E402
from tests.request_path.conftest import (  # noqa: E402
    PATIENT_ADMISSION,
    bus_config,
    providers_for,
)


async def main(settings: dict[str, object]) -> None:
    configure_logging("error")
    ns = str(settings["ns"])
    config = Config(
        bus=bus_config(ns),
        providers=providers_for(str(settings["simulator"]), ("openai",)),
        gateway=GatewayConfig(port=0),
        limits=LimitsConfig(**settings["limits"]),  # type: ignore[arg-type]
        quota=QuotaConfig(**settings["quota"]),  # type: ignore[arg-type]
        # Hundreds of admissions at once on a busy machine can take longer than the
        # default 500 ms; one that timed out would be refused as unavailable, not counted.
        admission=PATIENT_ADMISSION,
        # Both processes ask the same questions: every one must reach the limiter and
        # a provider, not be coalesced with the other process's.
        cache=CacheConfig(enabled=False),
        health=HealthConfig(enabled=False),
    )
    node = Node(config, str(settings["url"]), "worker")
    await node.start()
    try:
        print("ready", flush=True)
        await _wait_for_start(str(settings["url"]), f"{ns}:go")
        client = Client(node.bus, timeout_ms=30_000)
        refused: collections.Counter[str] = collections.Counter()
        usage: list[int] = []

        async def one(index: int) -> None:
            request = GenerateRequest(prompt=f"question {index}", user_id=str(settings["user"]),
                                     max_tokens=int(settings.get("max_tokens", 16)))  # fmt: skip
            try:
                answer = await client.generate(request)
            except GenerateError as exc:
                refused[exc.kind] += 1
            else:
                usage.append(answer.usage.total_tokens)

        await asyncio.gather(*(one(i) for i in range(int(settings["count"]))))  # type: ignore[call-overload]
        # Every request's request.completed settled before this process stops its actors
        # (else a busy machine stops them with refusals still reserved in the quotas).
        await _settled(str(settings["url"]), node.bus.names.events)
        clock_off_s = time.time() - node.bus.now_ms() / 1000  # this clock against Redis's
        result = {"admitted": len(usage), "refused": refused, "usage": usage,
                  "clock_off_s": clock_off_s}  # fmt: skip
        print(json.dumps(result), flush=True)
    finally:
        await node.stop(timeout=5.0)


async def _settled(url: str, events: str) -> None:
    """Wait until the limiter's and the quota keeper's groups have read and acknowledged
    every event (of both processes: the groups are shared)."""
    client = async_client(url)
    try:
        async with asyncio.timeout(120):
            while True:
                last = (await client.xinfo_stream(events))["last-generated-id"]
                groups = {g["name"].decode(): g for g in await client.xinfo_groups(events)}
                if all(name in groups and groups[name]["pending"] == 0
                       and groups[name]["last-delivered-id"] == last
                       for name in ("limiter", "quota")):  # fmt: skip
                    return
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def _wait_for_start(url: str, key: str) -> None:
    """Block until the test pushes the start signal.

    Not on the bus's clients: their socket timeouts (about a second in the tests) are
    shorter than this wait, which lasts as long as the other workers take to start.
    """
    client = async_client(url, socket_timeout=None)
    try:
        if await client.blpop([key], timeout=120) is None:
            raise TimeoutError(f"no start signal on {key} within 120 s")
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(_settings))
