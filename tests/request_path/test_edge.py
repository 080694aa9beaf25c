"""The gateway's edge: whatever a client sends, the answer is a JSON error that says
what is wrong (OpenAI's shape under /v1), never aiohttp's plain text or a traceback."""

from __future__ import annotations

import aiohttp
import pytest

from tests.request_path.conftest import MakeNode


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/ai-orchestration/generate", b'{"prompt": "\xff"}'),
        ("/ai-orchestration/generate-with-fallback", b'{"prompt": "caf\xc3"}'),
        ("/v1/chat/completions",
         b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xfe\xff"}]}'),
    ],
)  # fmt: skip
async def test_a_body_that_is_not_utf8_is_a_400(
    make_node: MakeNode, http: aiohttp.ClientSession, path: str, raw: bytes
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    headers = {"Content-Type": "application/json"}
    async with http.post(node.gateway.url + path, data=raw, headers=headers) as response:
        assert response.status == 400, await response.text()
        assert response.content_type == "application/json"
        error = (await response.json())["error"]
    assert "UTF-8" in error["message"]
    if path.startswith("/v1/"):
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"
    else:
        assert error["type"] == "invalid_request"


def _openai_shaped(error: dict[str, object]) -> bool:
    return set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("GET", "/ai-orchestration/nothing-here", 404, "not_found"),
        ("GET", "/ai-orchestration/generate", 405, "method_not_allowed"),
        ("DELETE", "/ai-orchestration/quotas/ann", 405, "method_not_allowed"),
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
    ],
)
async def test_routing_errors_are_json(
    make_node: MakeNode, http: aiohttp.ClientSession, method: str, path: str, status: int,
    kind: str,
) -> None:  # fmt: skip
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    async with http.request(method, node.gateway.url + path) as response:
        assert response.status == status
        assert response.content_type == "application/json", await response.text()
        error = (await response.json())["error"]
        if status == 405:
            assert response.headers["Allow"]
    assert path in error["message"] or method in error["message"]
    if path.startswith("/v1/"):
        assert _openai_shaped(error) and error["code"] == kind
        assert error["type"] == "invalid_request_error"
    else:
        assert error["type"] == kind


@pytest.mark.parametrize("path", ["/ai-orchestration/generate", "/v1/chat/completions"])
async def test_a_body_over_the_limit_is_a_json_413(
    make_node: MakeNode, http: aiohttp.ClientSession, path: str
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    too_big = b" " * (node.config.gateway.max_body_bytes + 1)
    async with http.post(node.gateway.url + path, data=too_big) as response:
        assert response.status == 413
        assert response.content_type == "application/json", await response.text()
        error = (await response.json())["error"]
    assert str(node.config.gateway.max_body_bytes) in error["message"]
    assert (error["code"] if path.startswith("/v1/") else error["type"]) == "too_large"


async def test_a_cors_preflight_gets_no_cors_headers(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    url = f"{node.gateway.url}/ai-orchestration/rate-limits/ann/config"
    async with http.options(url, headers=preflight) as response:
        assert response.status == 405
        assert response.content_type == "application/json"
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize("path", ["/health", "/v1/models"])
async def test_a_header_too_large_is_a_json_400(
    make_node: MakeNode, http: aiohttp.ClientSession, path: str
) -> None:
    # aiohttp's HTTP parser refuses it before any middleware; the shape is both ours and
    # OpenAI's, since the path is not known to the parser's error handler.
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    headers = {"X-Padding": "a" * 10_000}
    async with http.get(node.gateway.url + path, headers=headers) as response:
        assert response.status == 400
        assert response.content_type == "application/json", await response.text()
        error = (await response.json())["error"]
    assert _openai_shaped(error) and error["type"] == "invalid_request"
    assert error["code"] == "header_too_large" and "8190 bytes" in error["message"]
    assert "aaaa" not in error["message"]  # what was sent is not echoed


_BAD_IDS = ["ann\x00", "a\x07b", "ann\n", "\x85", "u" * 257, ""]


@pytest.mark.parametrize("bad", _BAD_IDS)
@pytest.mark.parametrize("field", ["user_id", "session_id"])
async def test_a_user_or_session_id_with_control_characters_is_a_400(
    make_node: MakeNode, http: aiohttp.ClientSession, field: str, bad: str
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    url = f"{node.gateway.url}/ai-orchestration/generate"
    async with http.post(url, json={"prompt": "hi", field: bad}) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert f"$.{field}" in error["message"]


@pytest.mark.parametrize("bad", _BAD_IDS)
async def test_an_openai_user_with_control_characters_is_a_400(
    make_node: MakeNode, http: aiohttp.ClientSession, bad: str
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "user": bad}
    async with http.post(f"{node.gateway.url}/v1/chat/completions", json=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert "$.user" in error["message"] and error["code"] == "invalid_request"


async def test_a_user_id_may_be_any_printable_text(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    url = f"{node.gateway.url}/ai-orchestration/generate"
    for fine in ["ann", "Émile Zola <ez@example.org>", "用户 7", "u" * 256]:
        async with http.post(url, json={"prompt": "hi", "user_id": fine}) as response:
            assert response.status == 200, await response.text()
