"""Ask/reply through the bus against a bare Redis Streams echo, in one run.

    python benchmarks/bus.py [--rounds 1000] [--repeat 5] [--inflight 64] [--seconds 1]

Runs on the external Redis (``REDIS_URL``, else 127.0.0.1:6379 if it answers) and on
the embedded one. The floor is a bare echo with the same redis-py client settings:
the caller ``XADD``s a request, an echo loop ``XREADGROUP``s it and ``XADD``s the
reply, the caller reads it with a blocking ``XREAD``. With many in flight, the echo
replies to each batch in one pipeline and a single reader dispatches the replies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import compare, forget, main, report

from actors.messages import CODEC, Ping
from actors.runtime.echo import EchoActor
from bus import Bus, BusConfig
from bus._aio import cancel_and_wait
from bus._bus import _client


class RawEcho:
    """The floor: a bare XADD / XREADGROUP / XADD echo."""

    def __init__(self, url: str, ns: str) -> None:
        self.req, self.rep = f"{ns}:raw:req", f"{ns}:raw:rep"
        self.r = _client(url, 2.0, 1.0)
        self.blocking = _client(url, 10.0, 1.0)
        self.server_conn = _client(url, 10.0, 1.0)
        self.waiters: dict[bytes, asyncio.Future[None]] = {}
        self.counter = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.r.delete(self.req, self.rep)
        await self.r.xgroup_create(self.req, "echo", id="$", mkstream=True)
        self.tasks = [asyncio.create_task(self._serve()), asyncio.create_task(self._replies())]

    async def stop(self) -> None:
        for t in self.tasks:
            await cancel_and_wait(t)
        await self.r.delete(self.req, self.rep)
        for c in (self.r, self.blocking, self.server_conn):
            await c.aclose()

    async def _serve(self) -> None:
        while True:
            resp: Any = await self.server_conn.xreadgroup(
                "echo", "c", {self.req: ">"}, count=64, block=1000
            )
            for _s, entries in resp or ():
                if len(entries) == 1:
                    await self.r.xadd(self.rep, {b"corr": entries[0][1][b"corr"]})
                    continue
                pipe = self.r.pipeline(transaction=False)
                for _id, fields in entries:
                    pipe.xadd(self.rep, {b"corr": fields[b"corr"]})
                await pipe.execute()

    async def _replies(self) -> None:
        last = b"0-0"
        while True:
            resp: Any = await self.blocking.xread({self.rep: last}, count=256, block=1000)
            for _s, entries in resp or ():
                for entry_id, fields in entries:
                    last = entry_id
                    fut = self.waiters.pop(fields[b"corr"], None)
                    if fut is not None:
                        fut.set_result(None)

    async def call(self) -> None:
        self.counter += 1
        corr = b"%d" % self.counter
        fut = asyncio.get_running_loop().create_future()
        self.waiters[corr] = fut
        await self.r.xadd(self.req, {b"type": b"ping", b"data": b"{}", b"corr": corr})
        await fut


async def _measure(label: str, url: str, args: argparse.Namespace) -> dict[str, float]:
    """Raw and bus runs interleaved, ``args.repeat`` times; the medians are reported."""
    ns = f"bench{os.getpid()}"
    raw = RawEcho(url, ns)
    await raw.start()
    async with Bus(url, CODEC, BusConfig(namespace=ns)) as bus:
        echo = EchoActor(bus, concurrency=args.inflight)
        await echo.start()

        async def ask() -> object:
            return await bus.ask(echo.stream, Ping(), timeout=5.0)

        r = await compare(raw.call, ask, args)
        await echo.stop(timeout=5.0)
        await forget(bus.redis, ns)
    await raw.stop()
    report(label, r, "raw", args.inflight)
    return r


if __name__ == "__main__":
    main(__doc__, _measure, rounds=1000)
