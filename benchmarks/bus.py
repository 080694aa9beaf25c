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
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from actors.echo import EchoActor
from actors.messages import CODEC, Ping
from bus import Bus, BusConfig, EmbeddedRedis
from bus._aio import cancel_and_wait
from bus._bus import _client


def _percentile(samples: list[float], q: int) -> float:
    if not samples:
        return 0.0
    return float(statistics.quantiles(samples, n=100, method="inclusive")[q - 1])


async def _latencies(call: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    for _ in range(200):
        await call()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1e6)
    return out


async def _throughput(
    call: Callable[[], Awaitable[object]], inflight: int, seconds: float
) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return done / (time.perf_counter() - start)


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

        runs: dict[str, list[float]] = {
            k: [] for k in ("raw_p50", "raw_p99", "bus_p50", "bus_p99", "raw_rps", "bus_rps")
        }
        for _ in range(args.repeat):
            for name, call in (("raw", raw.call), ("bus", ask)):
                lat = await _latencies(call, args.rounds)
                runs[f"{name}_p50"].append(_percentile(lat, 50))
                runs[f"{name}_p99"].append(_percentile(lat, 99))
                runs[f"{name}_rps"].append(await _throughput(call, args.inflight, args.seconds))
        await echo.stop(timeout=5.0)
        keys = [k async for k in bus.redis.scan_iter(match=f"{ns}:*")]
        if keys:
            await bus.redis.delete(*keys)
    await raw.stop()
    r = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"{label:9} p50 {r['bus_p50']:5.0f} us (raw {r['raw_p50']:4.0f} us, "
        f"{r['bus_p50'] / r['raw_p50']:.2f}x)  p99 {r['bus_p99']:5.0f} us "
        f"(raw {r['raw_p99']:4.0f} us)  {args.inflight} in flight: {r['bus_rps']:6.0f}/s "
        f"(raw {r['raw_rps']:6.0f}/s, {r['bus_rps'] / r['raw_rps']:.2f}x)",
        flush=True,
    )
    return r


async def _external_url() -> str | None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        await client.ping()
    except Exception:
        return None
    finally:
        await client.aclose()
    return url


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    url = await _external_url()
    if url:
        await _measure("external", url, args)
    else:
        print("external: no Redis answers; skipped")
    with EmbeddedRedis() as embedded:
        await _measure("embedded", embedded.url, args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
