"""The request path from another language: plain XADD in, plain XREAD out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from tests.conftest import PATIENCE, eventually
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


async def test_a_message_on_the_wrong_stream_is_dead_lettered_at_once(make_node: MakeNode) -> None:
    """A valid generate.request sent to a breaker's stream: dead at once, with why."""
    node = await make_node(providers=("google",))
    redis = node.bus.redis
    request = {"request_id": "r-3", "prompt": "hi"}
    wrong = node.bus.names.calls("google")
    await redis.xadd(wrong, {"type": "generate.request", "data": json.dumps(request)})

    async def dead() -> list[tuple[bytes, dict[bytes, bytes]]]:
        return list(await redis.xrange(node.bus.names.dead))

    ((_id, fields),) = await eventually(dead)
    assert (
        fields[b"reason"]
        == f"rejected: breaker does not take GenerateRequest (on {wrong})".encode()
    )
    assert fields[b"deliveries"] == b"1"
    assert fields[b"source_stream"] == wrong.encode()


async def test_a_request_with_a_control_character_in_its_user_id_is_refused(
    make_node: MakeNode, plain: redis.asyncio.Redis
) -> None:
    node = await make_node(providers=("anthropic",))
    replies = f"{node.bus.names.ns}:my-replies"
    request = {"request_id": "r-3", "prompt": "hi", "user_id": "svc\x007"}
    await plain.xadd(node.bus.names.requests, {"type": "generate.request",
                     "data": json.dumps(request), "corr": "c-3", "reply_to": replies})  # fmt: skip
    response = await plain.xread({replies: "0"}, block=int(PATIENCE * 1000))
    (_stream, [(_id, fields)]) = response[0]
    assert fields[b"type"] != b"generate.response"
    assert "user_id" in fields[b"data"].decode()
    dead = await plain.xrange(node.bus.names.dead)
    assert len(dead) == 1 and b"user_id" in dead[0][1][b"reason"]
