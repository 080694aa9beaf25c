"""/openapi.json and the gateway agree: a body the schema accepts is not refused with a
400, and a body it refuses is (checked with a JSON Schema validator, body by body)."""

from __future__ import annotations

from typing import Any

import aiohttp
import jsonschema
import pytest

from actors.runtime.config import CacheConfig
from tests.request_path.conftest import ADMIN, MakeNode

_USER = {"role": "user", "content": "hi"}
_SYSTEM = {"role": "system", "content": "be brief"}

GENERATE = [
    {"prompt": "hi"},
    {"prompt": ""},
    {"messages": [_USER]},
    {"messages": [_SYSTEM, _USER]},
    {},
    {"prompt": None},
    {"messages": []},
    {"messages": [_SYSTEM]},
    {"prompt": "hi", "messages": [_USER]},
    {"prompt": "hi", "messages": []},
    {"prompt": "hi", "messages": [_SYSTEM]},
    {"messages": [{"role": "tool", "content": "x"}]},
    {"prompt": "hi", "stop": "END"},
    {"prompt": "hi", "stop": ["a", "b", "c", "d"]},
    {"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]},
    {"prompt": "hi", "temperature": 2},
    {"prompt": "hi", "temperature": 2.5},
    {"prompt": "hi", "top_p": 0},
    {"prompt": "hi", "max_tokens": 0},
    {"prompt": "hi", "user_id": "ann", "session_id": "s-1"},
    {"prompt": "hi", "user_id": "ann\n"},
    {"prompt": "hi", "session_id": ""},
    {"prompt": "hi", "strategy": "cost"},
    {"prompt": "hi", "strategy": "fastest"},
    {"prompt": "hi", "timeout_ms": 0},
    {"prompt": "hi", "colour": "red"},
    [{"prompt": "hi"}],
]

CHAT = [
    {"model": "gpt-4o", "messages": [_USER]},
    {"model": "gpt-4o", "messages": [_USER], "n": 1},
    {"model": "gpt-4o", "messages": [_USER], "n": None},
    {"model": "gpt-4o", "messages": [_USER], "n": 0},
    {"model": "gpt-4o", "messages": [_USER], "n": 2},
    {"model": "gpt-4o", "messages": [_USER], "n": 17},
    {"model": "gpt-4o", "messages": [_USER], "n": 2, "stream": True},
    {"model": "gpt-4o", "messages": []},
    {"model": "gpt-4o", "messages": [_SYSTEM]},
    {"model": "gpt-4o", "messages": [{"role": "developer", "content": "x"}, _USER]},
    {"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]},
    {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
    {"model": "gpt-4o",
     "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
    {"model": "gpt-4o", "messages": [_USER], "stop": ["a", "b", "c", "d", "e"]},
    {"model": "gpt-4o", "messages": [_USER], "max_tokens": 0},
    {"model": "gpt-4o", "messages": [_USER], "user": "ann\x00"},
    {"model": "gpt-4o", "messages": [_USER], "seed": 7},
    {"model": "gpt-4o", "messages": [_USER], "top_k": 3},  # unknown to OpenAI: refused
    {"model": "gpt-4o", "messages": [_USER], "tools": []},
    {"model": "gpt-4o", "messages": [_USER], "tools": [{"type": "function"}]},
    {"model": "gpt-4o", "messages": [_USER], "response_format": {"type": "json_object"}},
    {"model": "gpt-4o", "messages": [_USER], "response_format": {"type": "xml"}},
    {"messages": [_USER]},
]  # fmt: skip

RATE_LIMITS = [
    {},
    {"requests_per_minute": 60},
    {"requests_per_minute": 60.0},
    {"requests_per_minute": None},
    {"requests_per_minute": 0.5},
    {"requests_per_minute": 1e-300},
    {"requests_per_minute": -1},
    {"tokens_per_hour": 10**12},
    {"tokens_per_hour": 10**12 + 1},
    {"cost_per_minute": 0.01},
    {"cost_per_minute": 9e6},
    {"cost_per_minute": 9e6 + 1},
    {"cost_per_minute": 1e308},
    {"burst_window_ms": 0},
    {"burst_window_ms": 3_600_000},
    {"burst_window_ms": 3_600_001},
    {"requests_per_second": 1},
    {"requests_per_minute": "60"},
]

QUOTAS = [
    {"daily_request_limit": 500, "monthly_cost_limit": None},
    {"daily_cost_limit": 1e300},
    {"per_session_token_limit": 2.5},
    {"monthly_cost_limit": -0.01},
    {"weekly_token_limit": 5},
]


_ENTRY = {"prompt": "hi", "response": "hello", "model": "gpt-4o"}
WARM = [
    {"entries": []},
    {"entries": [_ENTRY]},
    {"entries": [_ENTRY | {"ttl": 60, "shared": True, "user_id": "ann"}]},
    {"entries": [_ENTRY | {"ttl": 0}]},
    {"entries": [_ENTRY | {"ttl": 31_536_001}]},
    {"entries": [{"prompt": "hi", "model": "gpt-4o"}]},
    {"entries": [{"response": "x", "model": "gpt-4o"}]},
    {"entries": [_ENTRY | {"messages": [_USER]}]},
    {"entries": [{"messages": [_SYSTEM], "response": "x", "model": "gpt-4o"}]},
    {"entries": [_ENTRY | {"temperature": 3}]},
    {"entries": [_ENTRY | {"colour": "red"}]},
    {"entries": [_ENTRY | {"user_id": ""}]},
    [_ENTRY],
]

CLEAR = [{}, {"user_id": "ann"}, {"model": "gpt-4o"}, {"user_id": ""}, {"who": "ann"}]


def _schema_accepts(document: dict[str, Any], body: Any, name: str) -> bool:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema).is_valid(body)


@pytest.mark.parametrize(
    ("method", "path", "bodies"),
    [
        ("POST", "/ai-orchestration/generate", GENERATE),
        ("POST", "/v1/chat/completions", CHAT),
        ("PUT", "/ai-orchestration/rate-limits/{user}/config", RATE_LIMITS),
        ("PUT", "/ai-orchestration/quotas/{user}/config", QUOTAS),
        ("POST", "/ai-orchestration/cache/warm", WARM),
        ("POST", "/ai-orchestration/cache/clear", CLEAR),
    ],
)
async def test_the_schema_and_the_gateway_refuse_the_same_bodies(
    make_node: MakeNode, http: aiohttp.ClientSession, method: str, path: str,
    bodies: list[Any],
) -> None:  # fmt: skip
    node = await make_node(providers=("openai",), cache=CacheConfig())
    assert node.gateway is not None
    async with http.get(f"{node.gateway.url}/openapi.json") as response:
        document = await response.json()
    operation = document["paths"][path.replace("{user}", "{user_id}")][method.lower()]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = ref.rpartition("/")[2]
    disagreements = []
    for index, body in enumerate(bodies):
        url = node.gateway.url + path.format(user=f"u{index}")
        async with http.request(method, url, json=body, headers=ADMIN) as response:
            refused = response.status == 400
            answer = await response.json()
        assert response.status in (200, 400), answer
        if refused == _schema_accepts(document, body, name):
            disagreements.append((body, response.status, answer))
    assert disagreements == []
