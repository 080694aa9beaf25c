"""A 503 means the request did not run: Redis stalls (SIGSTOP) under the gateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator

import aiohttp
import pytest
import redis.asyncio
from structlog.testing import capture_logs

from actors.node import Node
from actors.providers.simulator import Simulator
from actors.runtime.config import Config, GatewayConfig, QuotaConfig
from bus import EmbeddedRedis
from tests.conftest import eventually
from tests.request_path.conftest import NO_LIMITS, NO_QUOTAS, bus_config, providers_for


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as embedded:
        yield embedded


async def test_a_request_refused_while_redis_stalls_never_runs(
    server: EmbeddedRedis, simulator: Simulator
) -> None:
    ns = f"st{uuid.uuid4().hex[:8]}"
    config = Config(
        bus=bus_config(ns),
        providers=providers_for(simulator.url, ("openai",)),
        gateway=GatewayConfig(port=0),
        limits=NO_LIMITS,
        quota=QuotaConfig(**{f: None for f in NO_QUOTAS.__struct_fields__
                              if f.endswith("_limit")} | {"daily_request_limit": 1_000}),
    )  # fmt: skip
    # The gateway in a process of its own, so that its first write in the stall is its
    # own request's, on a connection Redis already holds: that one Redis takes when it
    # wakes (later writes, on new connections, it never reads).
    node = Node(config, server.url, "worker")
    await node.start()
    gateway = Node(config, server.url, "gateway")
    await gateway.start()
    assert gateway.gateway is not None and server.pid is not None
    url = f"{gateway.gateway.url}/ai-orchestration/generate"
    body = {"prompt": "hello", "user_id": "stalled"}
    check = redis.asyncio.Redis.from_url(server.url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            async with http.post(url, json=body) as answer:
                assert answer.status == 200, await answer.text()
            calls_before = simulator.state.calls["openai"]
            ids = [f"stall-{i}" for i in range(8)]
            with capture_logs() as logs:
                os.kill(server.pid, signal.SIGSTOP)
                try:
                    posts = [asyncio.create_task(_post(http, url, body, request_id))
                             for request_id in ids]  # fmt: skip
                    # Each publish is refused (no connection could be made: a 503 at
                    # once) or goes unanswered: whether Redis took it is then unknown
                    # until Redis can say, and the gateway holds the request meanwhile.
                    await eventually(
                        lambda: sum(p.done() for p in posts) + _unknown(logs) >= len(ids),
                        timeout=60,
                    )
                finally:
                    os.kill(server.pid, signal.SIGCONT)
                answers = await asyncio.gather(*posts)
                assert [status for status, _kind in answers] == [503] * len(ids), answers
                assert {kind for _status, kind in answers} == {"unavailable"}
                # Redis now takes the writes it held; they reach the requests stream
                # and the router, which must drop them unread.
                landed = await eventually(lambda: _landed(check, node, ids), timeout=60)
                await eventually(lambda: _router_done(check, node, max(landed)), timeout=60)
        assert simulator.state.calls["openai"] == calls_before  # no provider was called
        completed = [json.loads(f[b"data"])["request_id"]
                     for _i, f in await check.xrange(node.bus.names.events)
                     if f[b"type"] == b"request.completed"]  # fmt: skip
        assert not set(completed) & set(ids)
        usage = await node.quotas.get_usage("stalled")
        daily = next(r for r in usage["quotas"] if r["quota_type"] == "daily_requests")
        assert daily["used"] == 1  # the first request only: nothing else was charged
        assert sum(e["event"] == "bus.published_too_late" for e in logs) == len(landed)
    finally:
        await check.aclose()
        await gateway.stop(timeout=2.0)
        await node.stop(timeout=2.0)


def _unknown(logs: list[dict[str, object]]) -> int:
    return sum(e["event"] == "bus.ask_outcome_unknown" for e in logs)


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, str], request_id: str
) -> tuple[int, str]:
    async with http.post(url, json=body, headers={"X-Request-ID": request_id}) as answer:
        kind = (await answer.json())["error"]["type"] if answer.status != 200 else "ok"
        return answer.status, kind


async def _landed(check: redis.asyncio.Redis, node: Node, ids: list[str]) -> list[bytes] | None:
    """The entry ids of those of these requests that reached the requests stream."""
    found = [entry_id for entry_id, fields in await check.xrange(node.bus.names.requests)
             if json.loads(fields[b"data"]).get("request_id") in ids]  # fmt: skip
    return found or None


async def _router_done(check: redis.asyncio.Redis, node: Node, last: bytes) -> bool:
    """The router's group has read past ``last`` and holds nothing pending."""
    (group,) = [g for g in await check.xinfo_groups(node.bus.names.requests)
                if g["name"] == b"router"]  # fmt: skip
    delivered = tuple(int(p) for p in group["last-delivered-id"].split(b"-"))
    return delivered >= tuple(int(p) for p in last.split(b"-")) and group["pending"] == 0
