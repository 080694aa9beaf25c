"""The health prober: embedded with no bus, and in nodes sharing one Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgspec
import pytest

from actors.health import HealthProber
from actors.messages import ProviderHealth, ProviderRecovered, ProviderUnhealthy
from actors.providers.simulator import UNKNOWN_MODEL_MARKER, Simulator
from actors.runtime.config import Config, HealthConfig
from tests.conftest import eventually
from tests.request_path.conftest import MakeNode, providers_for

FAST = HealthConfig(interval_ms=100, jitter_ms=0, timeout_ms=2_000, down_after=2)


def _prober(simulator: Simulator, config: HealthConfig = FAST) -> HealthProber:
    providers = providers_for(simulator.url, ("openai", "anthropic", "google"))
    return HealthProber.from_config(Config(providers=providers, health=config))


async def test_one_round_embedded_spends_no_tokens(simulator: Simulator) -> None:
    prober = _prober(simulator)
    report = await prober.probe_once()
    assert report.status == "healthy"
    assert sorted(p.provider for p in report.providers) == ["anthropic", "google", "openai"]
    assert all(p.probe_ok and p.latency_ms is not None for p in report.providers)
    assert simulator.state.last == {}  # no generation call: models listings only
    await prober.stop()


async def test_degraded_then_down(simulator: Simulator) -> None:
    prober = _prober(simulator)
    simulator.state.update("openai", {"error_rate": 1.0})
    simulator.state.update("anthropic", {"auth_failure": True})
    simulator.state.update("google", {"latency_ms": 300})
    slow = HealthConfig(interval_ms=100, jitter_ms=0, slow_ms=200)
    prober.config = slow
    first = await prober.probe_once()
    assert first.of("openai").status == "degraded"  # type: ignore[union-attr]
    # A refused key too: one failed probe is degraded (a 403 may be a key that may
    # generate but not list models), two are down.
    assert first.of("anthropic").status == "degraded"  # type: ignore[union-attr]
    assert "authentication" in first.of("anthropic").why  # type: ignore[union-attr]
    assert first.of("google").status == "degraded"  # type: ignore[union-attr]
    assert "probe took" in first.of("google").why  # type: ignore[union-attr]
    second = await prober.probe_once(["openai", "anthropic"])
    assert second.of("openai").status == "down"  # type: ignore[union-attr]
    assert second.of("anthropic").status == "down"  # type: ignore[union-attr]
    assert prober.latest.status == "down"
    await prober.stop()


async def test_in_the_background_it_reports_changes(simulator: Simulator) -> None:
    async with _prober(simulator) as prober:
        changes = prober.changes()
        seen: list[ProviderHealth] = []

        async def watch() -> None:
            async for change in changes:
                seen.append(change)

        watcher = asyncio.create_task(watch())
        await eventually(lambda: len(seen) >= 3)  # each provider's first finding
        simulator.state.update("google", {"error_rate": 1.0})
        await eventually(lambda: any(s.provider == "google" and s.status == "down" for s in seen))
        simulator.state.update("google", {"error_rate": 0.0})
        await eventually(lambda: seen[-1].provider == "google" and seen[-1].status == "healthy")
        watcher.cancel()


async def _alerts(node: Any) -> list[Any]:
    entries = await node.bus.redis.xrange(node.bus.names.alerts)
    return [node.bus.codec.decode(fields).message for _id, fields in entries]


async def test_nodes_share_one_prober_per_provider_and_alert_on_down(
    make_node: MakeNode, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    first = await make_node(role="worker", health=FAST)
    second = await make_node(role="worker", health=FAST)
    redis = first.bus.redis
    ns = first.bus.names.ns

    async def holders() -> dict[str, str]:
        out = {}
        for name in ("openai", "anthropic", "google"):
            raw = await redis.get(f"{ns}:health:lease:{name}")
            if raw is not None:
                out[name] = raw.decode()
        return out

    await eventually(lambda: _all_held(holders))
    held = await holders()
    assert set(held.values()) <= {first.bus.node, second.bus.node}
    # Both processes know every provider's health, probed or not.
    await eventually(lambda: all(len(n.prober.latest.providers) == 3 for n in (first, second)))
    # Down: an alert, once; the router of either process skips it.
    simulator.state.update("openai", {"error_rate": 1.0})
    await eventually(lambda: second.prober.is_down("openai") and first.prober.is_down("openai"))
    alerts = await _alerts(first)
    assert [a.provider for a in alerts if isinstance(a, ProviderUnhealthy)] == ["openai"]
    simulator.state.update("openai", {"error_rate": 0.0})
    await eventually(lambda: not first.prober.is_down("openai"))
    await eventually(lambda: _has_recovered(first))
    # The holder of a lease stops: the other takes its providers over.
    holder = first if held["openai"] == first.bus.node else second
    other = second if holder is first else first
    await holder.stop()
    await eventually(lambda: _held_by(holders, "openai", other.bus.node))


async def _all_held(holders: Any) -> bool:
    return len(await holders()) == 3


async def _held_by(holders: Any, provider: str, node: str) -> bool:
    return (await holders()).get(provider) == node


async def _has_recovered(node: Any) -> bool:
    return any(isinstance(a, ProviderRecovered) for a in await _alerts(node))


async def test_the_router_skips_a_provider_found_down(
    make_node: MakeNode, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai", "anthropic"), health=FAST)
    assert node.gateway is not None and node.prober is not None
    simulator.state.update("openai", {"auth_failure": True})
    await eventually(lambda: node.prober.is_down("openai"))
    body = {"prompt": "hi", "strategy": "round_robin"}
    for _ in range(2):
        async with http.post(f"{node.gateway.url}/ai-orchestration/generate", json=body) as r:
            answer = await r.json()
            assert r.status == 200, answer
        attempts = answer["orchestration"]["attempts"]
        assert answer["response"]["provider"] == "anthropic"
        assert {a["outcome"] for a in attempts if a["provider"] == "openai"} <= {"provider_down"}


@pytest.mark.parametrize("completion", [False, True])
async def test_a_completion_probe_is_opt_in(simulator: Simulator, completion: bool) -> None:
    config = HealthConfig(interval_ms=100, completion_probe=completion)
    prober = _prober(simulator, config)
    report = await prober.probe_once(["openai"])
    assert report.status == "healthy"
    assert ("openai" in simulator.state.last) == completion
    await prober.stop()


async def test_a_completion_probe_checks_each_azure_deployment(simulator: Simulator) -> None:
    """Each deployment serves its own model: one missing deployment is found and named,
    though the resource and the other deployment answer."""
    base = providers_for(simulator.url, ("azure",))
    gone = f"gpt4o-mini-{UNKNOWN_MODEL_MARKER}"
    azure = msgspec.structs.replace(base.azure, deployments={"gpt-4o-mini": gone})
    providers = msgspec.structs.replace(base, azure=azure)
    config = HealthConfig(interval_ms=100, completion_probe=True, down_after=1)
    prober = HealthProber.from_config(Config(providers=providers, health=config))
    assert prober.adapters["azure"].probe_models() == ["gpt-4o", "gpt-4o-mini"]
    report = await prober.probe_once()
    found = report.of("azure")
    assert found is not None and found.status == "down"
    assert "gpt-4o-mini" in found.why and "gpt-4o:" not in found.why, found.why
    assert simulator.state.calls["azure"] == 2  # one call per deployment
    await prober.stop()
    healthy = msgspec.structs.replace(azure, deployments={"gpt-4o-mini": "gpt4o-mini"})
    prober = HealthProber.from_config(
        Config(providers=msgspec.structs.replace(base, azure=healthy), health=config)
    )
    assert (await prober.probe_once()).status == "healthy"
    await prober.stop()


async def test_health_endpoints(
    make_node: MakeNode, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai", "anthropic"), health=FAST)
    assert node.gateway is not None and node.prober is not None
    base = node.gateway.url
    await eventually(lambda: len(node.prober.latest.providers) == 2)
    async with http.get(f"{base}/ai-orchestration/health") as response:
        body = await response.json()
    assert response.status == 200 and body["status"] == "healthy", body
    row = next(p for p in body["providers"] if p["provider"] == "openai")
    assert row["breaker"] == "closed" and row["checked_at"] and row["latency_ms"] is not None
    simulator.state.update("openai", {"auth_failure": True})
    await eventually(lambda: node.prober.is_down("openai"))
    async with http.get(f"{base}/ai-orchestration/healthy-providers") as response:
        assert (await response.json())["providers"] == ["anthropic"]
    async with http.get(f"{base}/healthz") as response:
        assert response.status == 200
    async with http.get(f"{base}/readyz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ready"


async def test_no_providers_given_means_none_probed(simulator: Simulator) -> None:
    prober = _prober(simulator)
    report = await prober.probe_once([])  # a process that holds no lease
    assert report.providers == [] and sum(simulator.state.calls.values()) == 0
    await prober.stop()


async def test_a_new_prober_starts_from_the_last_finding(simulator: Simulator) -> None:
    prober = _prober(simulator)
    # Another process found openai down; this one takes over and its first probe fails.
    prober.observe(ProviderHealth(provider="openai", status="down", why="before",
                                  checked_at_ms=1))  # fmt: skip
    simulator.state.update("openai", {"error_rate": 1.0})
    report = await prober.probe_once(["openai"])
    assert report.of("openai").status == "down"  # type: ignore[union-attr]
    await prober.stop()


async def test_a_rate_limited_probe_is_busy_not_down(simulator: Simulator) -> None:
    prober = _prober(simulator)
    simulator.state.update("openai", {"rate_limit_rate": 1.0})
    for _ in range(3):
        report = await prober.probe_once(["openai"])
    assert report.of("openai").status == "degraded"  # type: ignore[union-attr]
    assert "rate limited" in report.of("openai").why  # type: ignore[union-attr]
    await prober.stop()


async def test_when_every_candidate_is_down_they_are_tried_all_the_same(
    make_node: MakeNode, simulator: Simulator, http: aiohttp.ClientSession
) -> None:
    slow = HealthConfig(interval_ms=60_000, jitter_ms=0, down_after=1)  # one round only
    node = await make_node(providers=("openai",), health=slow)
    assert node.gateway is not None and node.prober is not None
    simulator.state.update("openai", {"error_rate": 1.0})
    await node.prober.probe_once(["openai"])
    assert node.prober.is_down("openai")
    simulator.state.update("openai", {"error_rate": 0.0})  # the prober does not know yet
    async with http.post(f"{node.gateway.url}/ai-orchestration/generate",
                         json={"prompt": "last resort"}) as response:  # fmt: skip
        answer = await response.json()
    assert response.status == 200, answer
    assert answer["response"]["provider"] == "openai"
