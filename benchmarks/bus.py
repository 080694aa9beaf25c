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
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import RawEcho, compare, forget, main, report

from actors.messages import CODEC, Ping
from actors.runtime.echo import EchoActor
from bus import Bus, BusConfig


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
