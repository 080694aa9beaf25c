"""What the bus and admission benchmarks share: a call timed against its floor in
interleaved runs (medians reported), on the external Redis and on the embedded one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from actors import configure_logging
from bus import EmbeddedRedis
from bus._aio import cancel_and_wait
from bus._bus import _client

Call = Callable[[], Awaitable[object]]
Measure = Callable[[str, str, argparse.Namespace], Awaitable[Any]]


def percentile(samples: list[float], q: int) -> float:
    if not samples:
        return 0.0
    return float(statistics.quantiles(samples, n=100, method="inclusive")[q - 1])


async def latencies(call: Call, rounds: int) -> list[float]:
    """Microseconds per call, one at a time, after a warm-up."""
    for _ in range(200):
        await call()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        out.append((time.perf_counter() - start) * 1e6)
    return out


async def throughput(call: Call, inflight: int, seconds: float) -> float:
    """Calls per second with ``inflight`` callers at once."""
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


async def compare(floor: Call, measured: Call, args: argparse.Namespace) -> dict[str, float]:
    """Both calls, interleaved ``args.repeat`` times: medians of ``floor_p50``,
    ``floor_p99``, ``floor_rps`` and likewise ``measured_*``."""
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for name, call in (("floor", floor), ("measured", measured)):
            lat = await latencies(call, args.rounds)
            runs.setdefault(f"{name}_p50", []).append(percentile(lat, 50))
            runs.setdefault(f"{name}_p99", []).append(percentile(lat, 99))
            rps = await throughput(call, args.inflight, args.seconds)
            runs.setdefault(f"{name}_rps", []).append(rps)
    return {k: statistics.median(v) for k, v in runs.items()}


def report(label: str, r: dict[str, float], floor: str, inflight: int) -> None:
    print(
        f"{label:9} p50 {r['measured_p50']:5.0f} us ({floor} {r['floor_p50']:4.0f} us, "
        f"{r['measured_p50'] / r['floor_p50']:.2f}x)  p99 {r['measured_p99']:5.0f} us "
        f"({floor} {r['floor_p99']:4.0f} us)  {inflight} in flight: "
        f"{r['measured_rps']:6.0f}/s ({floor} {r['floor_rps']:6.0f}/s, "
        f"{r['measured_rps'] / r['floor_rps']:.2f}x)",
        flush=True,
    )


async def forget(redis: Redis, namespace: str) -> None:
    """Delete a benchmark's keys."""
    keys = [k async for k in redis.scan_iter(match=f"{namespace}:*", count=1000)]
    for start in range(0, len(keys), 1000):
        await redis.delete(*keys[start : start + 1000])


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


async def _on_each_redis(measure: Measure, args: argparse.Namespace) -> None:
    url = await _external_url()
    if url:
        await measure("external", url, args)
    else:
        print("external: no Redis answers; skipped")
    with EmbeddedRedis() as embedded:
        await measure("embedded", embedded.url, args)


def main(doc: str, measure: Measure, *, rounds: int) -> None:
    """Parse ``--rounds --repeat --inflight --seconds`` and measure on each Redis."""
    parser = argparse.ArgumentParser(description=doc.split("\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    # As serve logs (info and up): unconfigured, structlog prints every debug line of
    # every message, and the bus would be measured printing.
    configure_logging("warning")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_on_each_redis(measure, args))


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
