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
