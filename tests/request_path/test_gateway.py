"""The HTTP API: answers, errors that name the field, OpenAPI, models, breakers."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from actors.providers import Catalog
from actors.providers.simulator import Simulator
from tests.request_path.conftest import ADMIN, MakeNode


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any, **kw: Any
) -> tuple[int, Any, Any]:
    async with http.post(url, json=body, **kw) as response:
        return response.status, await response.json(), response.headers


async def test_generate_answers_in_the_documented_shape(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node()
    assert node.gateway is not None
    status, body, headers = await _post(
        http,
        f"{node.gateway.url}/ai-orchestration/generate",
        {"prompt": "Say hi.", "model": "gpt-4o", "user_id": "u1", "session_id": "s1",
         "temperature": 0.2, "max_tokens": 64},
        headers={"X-Request-ID": "req-42"},
    )  # fmt: skip
    assert status == 200, body
    response, orchestration = body["response"], body["orchestration"]
    assert set(response) == {"content", "provider", "model", "finish_reason", "usage", "cost_usd"}
    assert response["provider"] == "openai" and response["model"] == "gpt-4o"
    assert response["content"].startswith("Simulated answer")
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    info = Catalog().get("gpt-4o")
    assert response["cost_usd"] == pytest.approx(
        info.cost(usage["input_tokens"], usage["output_tokens"])
    )
    assert orchestration["request_id"] == "req-42" == headers["X-Request-ID"]
    assert orchestration["provider_selected"] == "openai"
    assert orchestration["cache_hit"] is False
    assert orchestration["processing_time_ms"] > 0
    assert orchestration["attempts"] == [
        {"provider": "openai", "model": "gpt-4o", "outcome": "ok",
         "latency_ms": orchestration["attempts"][0]["latency_ms"]}
    ]  # fmt: skip
    assert "fallback" not in body


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "invalid JSON"),
        (b"", "empty"),
        ({"prompt": 5}, "$.prompt"),
        ({"prompt": "x", "temperature": 3}, "$.temperature"),
        ({"prompt": "x", "max_tokens": 0}, "$.max_tokens"),
        ({"prompt": "x", "strategy": "fastest"}, "$.strategy"),
        ({"prompt": "x", "colour": "red"}, "unknown field `colour`"),
        ({}, "either `prompt` or `messages`"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "$.messages[0].role"),
        ({"prompt": "x", "timeout_ms": -1}, "$.timeout_ms"),
    ],
)
async def test_bad_input_is_a_400_that_names_the_problem(
    make_node: MakeNode, http: aiohttp.ClientSession, body: Any, named: str
) -> None:
    node = await make_node()
    assert node.gateway is not None
    url = f"{node.gateway.url}/ai-orchestration/generate"
    kw = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with http.post(url, **kw) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request"
    assert named in error["message"]


async def test_no_provider_is_a_503_and_fallback_is_a_system_answer(
    make_node: MakeNode, http: aiohttp.ClientSession, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai", "anthropic"))
    assert node.gateway is not None
    for provider in ("openai", "anthropic"):
        simulator.state.update(provider, {"error_rate": 1})
    status, body, _ = await _post(http, f"{node.gateway.url}/ai-orchestration/generate",
                                  {"prompt": "hi", "model": "balanced"})  # fmt: skip
    assert status == 503
    assert body["error"]["type"] == "no_provider"
    outcomes = [(a["provider"], a["outcome"]) for a in body["error"]["attempts"]]
    assert ("openai", "server_error") in outcomes and ("anthropic", "server_error") in outcomes
    status, body, _ = await _post(
        http, f"{node.gateway.url}/ai-orchestration/generate-with-fallback", {"prompt": "hi"}
    )
    assert status == 200
    assert body["fallback"] is True
    assert body["reason"].startswith("no_provider")
    assert body["response"]["provider"] == "system"
    assert body["response"]["content"]


async def test_models_openapi_and_health(make_node: MakeNode, http: aiohttp.ClientSession) -> None:
    node = await make_node(providers=("anthropic",))
    assert node.gateway is not None
    async with http.get(f"{node.gateway.url}/v1/models") as response:
        models = {m["id"] for m in (await response.json())["data"]}
    assert "claude-3-haiku-20240307" in models and "fast" in models
    assert "gpt-4o" not in models  # no enabled provider serves it
    async with http.get(f"{node.gateway.url}/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.")
    for path in ("/ai-orchestration/generate", "/ai-orchestration/generate-with-fallback",
                 "/v1/chat/completions", "/v1/models", "/ai-orchestration/circuit-breakers",
                 "/ai-orchestration/circuit-breakers/{provider}/reset"):  # fmt: skip
        assert path in document["paths"], path
    assert "GenerateBody" in document["components"]["schemas"]
    async with http.get(f"{node.gateway.url}/health") as response:
        assert (await response.json())["status"] == "ok"


async def test_breaker_endpoints(make_node: MakeNode, http: aiohttp.ClientSession) -> None:
    node = await make_node(providers=("openai", "anthropic"))
    assert node.gateway is not None
    base = f"{node.gateway.url}/ai-orchestration/circuit-breakers"
    async with http.get(base, headers=ADMIN) as response:
        states = {b["provider"]: b["state"] for b in (await response.json())["circuit_breakers"]}
    assert states == {"openai": "closed", "anthropic": "closed"}
    empty_json = ADMIN | {"Content-Type": "application/json"}  # an empty body is fine
    status, state, _ = await _post(http, f"{base}/openai/open", None, headers=empty_json)
    assert status == 200 and state["state"] == "open" and state["forced_open"]
    status, body, _ = await _post(
        http, f"{node.gateway.url}/ai-orchestration/generate",
        {"prompt": "hi", "model": "gpt-4o", "fallbacks": False},  # no chain to Anthropic
    )  # fmt: skip
    assert status == 503
    assert body["error"]["attempts"][0]["outcome"] == "breaker_open"
    status, state, _ = await _post(http, f"{base}/openai/reset", {}, headers=ADMIN)
    assert status == 200 and state["state"] == "closed"
    status, _body, _ = await _post(http, f"{base}/nobody/reset", {}, headers=ADMIN)
    assert status == 404


async def test_an_unknown_model_is_a_404(make_node: MakeNode, http: aiohttp.ClientSession) -> None:
    node = await make_node()
    assert node.gateway is not None
    url = f"{node.gateway.url}/ai-orchestration/generate"
    async with http.post(url, json={"prompt": "x", "model": "gpt-99"}) as response:
        assert response.status == 404
        error = (await response.json())["error"]
    assert error["type"] == "model_not_found" and "'gpt-99'" in error["message"]
