"""The management endpoints need the admin token, and a JSON content type to change
anything; the rest of the API does not; the token shows nowhere."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import structlog

from actors.runtime.config import CacheConfig, GatewayConfig
from tests.request_path.conftest import ADMIN, ADMIN_TOKEN, MakeNode

JSON = {"Content-Type": "application/json"}

# Every management endpoint: method, path, body.
MANAGEMENT: list[tuple[str, str, Any]] = [
    ("GET", "/ai-orchestration/circuit-breakers", None),
    ("POST", "/ai-orchestration/circuit-breakers/openai/reset", None),
    ("POST", "/ai-orchestration/circuit-breakers/openai/open", None),
    ("GET", "/ai-orchestration/quotas/ann", None),
    ("PUT", "/ai-orchestration/quotas/ann/config", {"daily_request_limit": 0}),
    ("POST", "/ai-orchestration/quotas/ann/reset", None),
    ("GET", "/ai-orchestration/rate-limits/ann", None),
    ("PUT", "/ai-orchestration/rate-limits/ann/config", {"requests_per_minute": None}),
    ("POST", "/ai-orchestration/rate-limits/ann/reset", None),
    ("GET", "/ai-orchestration/cache/stats", None),
    ("POST", "/ai-orchestration/cache/clear", {"user_id": "ann"}),
    ("POST", "/ai-orchestration/cache/warm", {"entries": []}),
    ("POST", "/ai-orchestration/monitoring/reset", None),
    ("POST", "/ai-orchestration/keys", {"user_id": "ann"}),
    ("GET", "/ai-orchestration/keys", None),
    ("POST", "/ai-orchestration/keys/abc/revoke", None),
    ("GET", "/ai-orchestration/users", None),
    ("GET", "/ai-orchestration/alerts", None),
    ("GET", "/ai-orchestration/bus", None),
]


async def _send(
    http: aiohttp.ClientSession, method: str, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, Any, Any]:
    data = None if body is None else aiohttp.JsonPayload(body)
    async with http.request(method, url, data=data, headers=headers) as response:
        return response.status, await response.json(), response.headers


async def _untouched(node: Any) -> bool:
    """No breaker moved, no limit or usage of ann written."""
    states = await node.store.read(node.enabled)
    return all(s.state == "closed" and not s.forced for s in states.values()) and not [
        k async for k in node.bus.redis.scan_iter(match=f"{node.bus.names.ns}:*ann*")
    ]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong-token", f"Basic {ADMIN_TOKEN}",
     f"Bearer {ADMIN_TOKEN}x", f"Bearer {ADMIN_TOKEN[:-1]}", "Bearer tést-ünicode"],
)  # fmt: skip
async def test_without_the_token_every_management_endpoint_is_a_401(
    make_node: MakeNode, http: aiohttp.ClientSession, authorization: str | None
) -> None:
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert node.gateway is not None
    headers = JSON | ({} if authorization is None else {"Authorization": authorization})
    with structlog.testing.capture_logs() as logs:
        for method, path, body in MANAGEMENT:
            status, answer, response_headers = await _send(
                http, method, node.gateway.url + path, body, headers
            )
            assert status == 401, (method, path, answer)
            assert answer["error"]["type"] == "unauthorized"
            assert "Authorization: Bearer" in answer["error"]["message"]
            assert response_headers["WWW-Authenticate"].startswith("Bearer")
            assert ADMIN_TOKEN not in str(answer)
    assert await _untouched(node)
    assert ADMIN_TOKEN not in str(logs)


async def test_with_the_token_every_management_endpoint_answers(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert node.gateway is not None
    for method, path, body in MANAGEMENT:
        status, answer, _h = await _send(http, method, node.gateway.url + path, body, ADMIN | JSON)
        assert status == 200, (method, path, answer)
    lower = {"Authorization": f"bearer {ADMIN_TOKEN}"}  # the scheme is case-insensitive
    status, _answer, _h = await _send(
        http, "GET", f"{node.gateway.url}/ai-orchestration/circuit-breakers", None, lower
    )
    assert status == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_change_needs_a_json_content_type(
    make_node: MakeNode, http: aiohttp.ClientSession, content_type: str | None
) -> None:
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert node.gateway is not None
    headers = ADMIN | ({} if content_type is None else {"Content-Type": content_type})
    for method, path, _body in MANAGEMENT:
        if method == "GET":
            continue
        raw = b"" if path.endswith(("/reset", "/open")) else b'{"burst_limit": 1}'
        url = node.gateway.url + path
        async with http.request(method, url, data=raw, headers=headers) as response:
            assert response.status == 415, (method, path)
            error = (await response.json())["error"]
        assert error["type"] == "unsupported_media_type"
        assert "application/json" in error["message"]
    assert await _untouched(node)


async def test_the_rest_of_the_api_needs_no_token(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert node.gateway is not None
    base = node.gateway.url
    for path in ("/v1/models", "/metrics", "/openapi.json", "/health"):
        async with http.get(base + path) as response:
            assert response.status == 200, path
    for path in ("/ai-orchestration/generate", "/ai-orchestration/generate-with-fallback"):
        async with http.post(base + path, json={"prompt": "hi"}) as response:
            assert response.status == 200, path
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(base + "/v1/chat/completions", json=body) as response:
        assert response.status == 200


async def test_a_gateway_without_a_token_refuses_every_management_request(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(
        providers=("openai",), gateway=GatewayConfig(port=0), cache=CacheConfig()
    )
    assert node.gateway is not None
    for authorization in ("Bearer ", "Bearer anything"):
        headers = JSON | {"Authorization": authorization}
        for method, path, body in MANAGEMENT:
            status, answer, _h = await _send(http, method, node.gateway.url + path, body, headers)
            assert status == 401, (method, path, answer)
            assert "AIO_ADMIN_TOKEN" in answer["error"]["message"]
    assert await _untouched(node)


async def test_the_token_is_in_no_repr(make_node: MakeNode) -> None:
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert ADMIN_TOKEN not in repr(node.config)
    assert ADMIN_TOKEN not in repr(node.config.gateway)


async def test_openapi_marks_the_management_endpoints(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert node.gateway is not None
    async with http.get(f"{node.gateway.url}/openapi.json") as response:
        document = await response.json()
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"adminToken"}
    assert schemes["adminToken"]["type"] == "http" and schemes["adminToken"]["scheme"] == "bearer"
    assert "AIO_ADMIN_TOKEN" in schemes["adminToken"]["description"]
    management = {(m.lower(), p.replace("openai", "{provider}").replace("/ann", "/{user_id}")
                   .replace("/abc/", "/{id}/")) for m, p, _b in MANAGEMENT}  # fmt: skip
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if (method, path) in management:
                assert operation["security"] == [{"adminToken": []}], (method, path)
                assert "401" in operation["responses"]
                assert ("415" in operation["responses"]) == (method != "get")
            else:
                assert "security" not in operation, (method, path)
    assert len(management) == 19
