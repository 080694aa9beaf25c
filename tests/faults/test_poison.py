"""Poison on every stream a running node reads: entries that are not JSON, of a type
nobody knows, with fields of the wrong type, or a valid message on the wrong stream.
Each ends in ``{ns}:dead`` at once with its reason and where it came from; the
consumers go on, and a healthy request is answered all the while."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import redis.asyncio

from actors.messages import keys_stream, limiter_stream, metrics_stream, quota_stream
from tests.conftest import eventually
from tests.request_path.conftest import MakeNode

POISON = [
    {"type": "generate.request", "data": "{not json"},
    {"type": "no.such.type", "data": "{}"},
    {"type": "generate.request", "data": json.dumps({"prompt": 5, "max_tokens": "many"})},
]


async def test_poison_on_every_stream_is_dead_lettered_and_the_rest_goes_on(
    make_node: MakeNode, server_url: str, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    names = node.bus.names
    # Every stream a node with the cache and the prober off reads in a group (the
    # events stream by several groups: each dead-letters what it cannot read).
    streams = [names.requests, names.calls("openai"), limiter_stream(names),
               quota_stream(names), keys_stream(names), metrics_stream(names),
               names.events]  # fmt: skip
    client = redis.asyncio.Redis.from_url(server_url)
    try:
        sent: dict[str, list[bytes]] = {}
        for stream in streams:
            ids = [await client.xadd(stream, poison) for poison in POISON]
            if stream != names.events:  # there every valid message is some reader's
                # A valid message, but not one this stream's actor takes.
                wrong = {"type": "ping", "data": json.dumps({"type": "ping", "payload": "x"})}
                ids.append(await client.xadd(stream, wrong))
            sent[stream] = ids

        async def dead() -> dict[str, list[dict[bytes, bytes]]] | None:
            entries = await client.xrange(names.dead)
            found: dict[str, list[dict[bytes, bytes]]] = {}
            for _id, fields in entries:
                found.setdefault(fields[b"source_stream"].decode(), []).append(fields)
            complete = all(set(ids) <= {f[b"source_id"] for f in found.get(s, [])}
                           for s, ids in sent.items())  # fmt: skip
            return found if complete else None

        found = await eventually(dead)
        for stream, ids in sent.items():
            sources = {f[b"source_id"] for f in found[stream]}
            assert {i for i in ids} <= sources, stream
            assert all(f.get(b"reason") for f in found[stream]), stream
        # The consumers went on: a request is answered.
        url = f"{node.gateway.url}/ai-orchestration/generate"
        async with http.post(url, json={"prompt": "hi", "model": "gpt-4o"}) as response:
            body: Any = await response.json()
            assert response.status == 200, body
        # ... and nothing was left pending in their groups.
        for stream in streams:
            for group in await client.xinfo_groups(stream):
                assert group["pending"] == 0, (stream, group)
    finally:
        await client.aclose()
