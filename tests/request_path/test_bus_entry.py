"""The request path from another language: plain XADD in, plain XREAD out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from tests.conftest import PATIENCE
from tests.request_path.conftest import MakeNode


@pytest.fixture
async def plain(server_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client as another language's would be: no socket timeout under a blocking read
    (the bus's own clients give up on a command after command_timeout_ms)."""
    client = redis.asyncio.Redis.from_url(server_url)
    yield client
    await client.aclose()


async def test_a_raw_client_gets_an_answer(make_node: MakeNode, plain: redis.asyncio.Redis) -> None:
    node = await make_node(providers=("anthropic",))
    replies = f"{node.bus.names.ns}:my-replies"
    request = {"request_id": "r-1", "prompt": "Hello from Go", "model": "claude-3-haiku",
               "user_id": "svc-7"}  # fmt: skip
    deadline = node.bus.now_ms() + 30_000
    await plain.xadd(
        node.bus.names.requests,
        {"type": "generate.request", "data": json.dumps(request), "corr": "c-1",
         "reply_to": replies, "deadline": str(deadline)},
    )  # fmt: skip
    response = await plain.xread({replies: "0"}, block=int(PATIENCE * 1000))
    (_stream, [(_id, fields)]) = response[0]
    assert fields[b"type"] == b"generate.response" and fields[b"corr"] == b"c-1"
    answer = json.loads(fields[b"data"])
    assert answer["request_id"] == "r-1"
    assert answer["provider"] == "anthropic" and answer["model"] == "claude-3-haiku-20240307"
    assert answer["content"] and answer["usage"]["total_tokens"] > 0


async def test_a_raw_client_gets_a_typed_failure(
    make_node: MakeNode, plain: redis.asyncio.Redis
) -> None:
    node = await make_node(providers=("anthropic",))
    replies = f"{node.bus.names.ns}:my-replies"
    request = {"request_id": "r-2", "prompt": "hi", "model": "gpt-4o"}  # nobody serves it
    await plain.xadd(node.bus.names.requests, {"type": "generate.request",
                      "data": json.dumps(request), "corr": "c-2", "reply_to": replies})  # fmt: skip
    response = await plain.xread({replies: "0"}, block=int(PATIENCE * 1000))
    (_stream, [(_id, fields)]) = response[0]
    assert fields[b"type"] == b"generate.failed"
    failed = json.loads(fields[b"data"])
    assert failed["kind"] == "no_provider" and failed["status"] == 503
