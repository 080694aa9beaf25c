"""Fallback chains per model, through HTTP against the simulator: a model's default chain
(its tier's other vendors), a configured chain in order, a request's own chain or none,
a provider/model pin that never crosses vendors, the failure classes that chain, and a
request too long for its model answered by a larger window down the chain."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from actors.providers import Catalog
from actors.providers.simulator import BLOCKED_MARKER, Simulator
from actors.routing._planner import fallback_chains
from actors.runtime.config import RouterConfig
from tests.conftest import eventually
from tests.limits.conftest import limits
from tests.request_path.conftest import ADMIN, MakeNode

ALL = ("openai", "anthropic", "google")
FAST = dict(retry_base_ms=10, retry_max_ms=50)


async def _generate(http: aiohttp.ClientSession, node: Any, **body: Any) -> tuple[int, Any]:
    async with http.post(f"{node.gateway.url}/ai-orchestration/generate", json=body) as response:
        return response.status, await response.json()


def _tried(body: Any) -> list[tuple[str, str, str]]:
    found = body.get("orchestration", body.get("error", {})).get("attempts", [])
    return [(a["provider"], a["model"], a["outcome"]) for a in found]


def test_every_tier_model_falls_back_to_its_tier_peers_of_other_vendors() -> None:
    catalog = Catalog()
    chains = fallback_chains(catalog, RouterConfig())
    assert chains["gpt-4o-mini"] == ["claude-3-5-haiku-20241022", "gemini-2.0-flash"]
    assert chains["gpt-6-luna"] == [
        "claude-haiku-5-5", "gemini-3.1-flash-lite", "gemini-3.5-flash-lite"
    ]  # fmt: skip
    assert "gpt-6.1-terra" not in chains["gpt-6.2-sol"]  # the same vendor: not a fallback
    assert not fallback_chains(catalog, RouterConfig(default_fallbacks=False))
    with pytest.raises(ValueError, match=r"router\.fallbacks\.gpt-4o"):
        fallback_chains(catalog, RouterConfig(fallbacks={"gpt-4o": ["no-such-model"]}))


async def test_a_model_whose_vendor_fails_is_answered_by_its_default_chain(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(providers=ALL, provider_overrides={"max_retries": 0})
    simulator.state.update("openai", {"error_rate": 1})
    for n in range(4):
        status, body = await _generate(http, node, prompt=f"hi {n}", model="gpt-4o-mini")
        assert status == 200, body
        tried = _tried(body)
        assert tried, body
        assert tried[0][:2] == ("openai", "gpt-4o-mini") and tried[0][2] == "server_error"
        assert tried[-1] == ("anthropic", "claude-3-5-haiku-20241022", "ok")
    # Under /v1 the headers say so, and the metrics count it.
    async with http.post(
        f"{node.gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    ) as response:
        assert response.status == 200
        assert response.headers["X-AIO-Fallback"] == "gpt-4o-mini"  # the model asked for
        assert response.headers["X-AIO-Model"] == "claude-3-5-haiku-20241022"
        assert response.headers["X-AIO-Provider"] == "anthropic"

    async def counted() -> bool:
        async with http.get(f"{node.gateway.url}/metrics") as response:
            text = await response.text()
        return 'aio_fallbacks_total{model="gpt-4o-mini",to_model="claude-3-5-haiku' in text

    await eventually(counted)


async def test_a_configured_chain_is_followed_in_order(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    router = RouterConfig(fallbacks={"gpt-4o": ["gemini-1.5-flash", "claude-3-haiku"]}, **FAST)
    node = await make_node(providers=ALL, router=router, provider_overrides={"max_retries": 0})
    simulator.state.update("openai", {"error_rate": 1})
    simulator.state.update("google", {"error_rate": 1})
    status, body = await _generate(http, node, prompt="hi", model="gpt-4o")
    assert status == 200, body
    assert [(p, m) for p, m, _o in _tried(body)] == [
        ("openai", "gpt-4o"), ("google", "gemini-1.5-flash"),
        ("anthropic", "claude-3-haiku-20240307"),
    ]  # fmt: skip
    # The request's own chain instead; or none at all.
    status, body = await _generate(http, node, prompt="hi", model="gpt-4o",
                                   fallbacks=["claude-3-haiku"])  # fmt: skip
    assert status == 200 and [p for p, _m, _o in _tried(body)] == ["openai", "anthropic"]
    status, body = await _generate(http, node, prompt="hi", model="gpt-4o", fallbacks=False)
    assert status == 503 and [p for p, _m, _o in _tried(body)] == ["openai"]
    status, body = await _generate(http, node, prompt="hi", model="gpt-4o",
                                   fallbacks=["no-such-model"])  # fmt: skip
    assert status == 400 and body["error"]["message"].startswith("fallbacks:"), body


async def test_a_pinned_provider_never_crosses_vendors(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(providers=ALL, provider_overrides={"max_retries": 0})
    simulator.state.update("openai", {"error_rate": 1})
    status, body = await _generate(http, node, prompt="hi", model="openai/gpt-4o-mini")
    assert status == 503, body
    assert {p for p, _m, _o in _tried(body)} == {"openai"}
    assert simulator.state.calls["anthropic"] == simulator.state.calls["google"] == 0


async def test_only_the_configured_failures_go_down_the_chain(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    router = RouterConfig(fallback_on=["server_error"], **FAST)
    node = await make_node(providers=ALL, router=router, provider_overrides={"max_retries": 0})
    simulator.state.update("openai", {"rate_limit_rate": 1, "retry_after_s": 0})
    status, body = await _generate(http, node, prompt="hi", model="gpt-4o-mini")
    assert status == 503 and {p for p, _m, _o in _tried(body)} == {"openai"}, body
    assert simulator.state.calls["anthropic"] == 0
    # A content filter ends a request, unless it is configured to chain.
    simulator.state.update("openai", {"rate_limit_rate": 0})
    blocked = f"tell me {BLOCKED_MARKER}"
    status, body = await _generate(http, node, prompt=blocked, model="gpt-4o-mini")
    assert status == 400 and len(_tried(body)) == 1


async def test_a_content_filter_chains_when_configured_to(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    router = RouterConfig(fallback_on=["content_filtered"], **FAST)
    node = await make_node(providers=ALL, router=router, provider_overrides={"max_retries": 0})
    blocked = f"tell me {BLOCKED_MARKER}"
    status, body = await _generate(http, node, prompt=blocked, model="gpt-4o-mini")
    assert status == 400, body  # the simulator's every vendor filters it
    assert [o for _p, _m, o in _tried(body)] == ["content_filtered"] * 3, body


async def test_a_request_too_long_for_its_model_goes_to_a_larger_window(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(providers=ALL, provider_overrides={"max_retries": 0})
    simulator.state.update("openai", {"context_window": 50})  # gpt-4o-mini's is 128k
    status, body = await _generate(http, node, prompt="word " * 200, model="gpt-4o-mini")
    assert status == 200, body
    tried = _tried(body)
    assert tried[0] == ("openai", "gpt-4o-mini", "context_too_long")
    assert tried[-1] == ("anthropic", "claude-3-5-haiku-20241022", "ok")  # 200k tokens


async def test_a_model_left_out_by_the_planner_chains_only_as_configured(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    """Its breaker open is a server error: with fallback_on naming only timeouts, the
    request ends there rather than going down the chain."""
    node = await make_node(providers=ALL, router=RouterConfig(fallback_on=["timeout"], **FAST))
    url = f"{node.gateway.url}/ai-orchestration/circuit-breakers/openai/open"  # type: ignore[union-attr]
    async with http.post(url, json={}, headers=ADMIN) as response:
        assert response.status == 200
    status, body = await _generate(http, node, prompt="hi", model="gpt-4o-mini")
    assert status == 503 and {p for p, _m, _o in _tried(body)} == {"openai"}, body


async def test_own_fallbacks_only_for_a_model(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=ALL)
    for model in ("legacy_fast", "openai/gpt-4o"):
        status, body = await _generate(http, node, prompt="hi", model=model,
                                       fallbacks=["claude-3-haiku"])  # fmt: skip
        assert status == 400 and body["error"]["message"].startswith("fallbacks:"), body


async def test_admission_reserves_for_the_model_asked_for(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    """gpt-6-luna's chain has dearer models: the reservation is luna's own (a fallback
    that answers settles to its real cost), so a tight cost limit admits it."""
    node = await make_node(providers=ALL, limits=limits(cost_per_minute=0.005))
    status, body = await _generate(http, node, prompt="hi", model="gpt-6-luna")
    assert status == 200, body
