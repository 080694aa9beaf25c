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

from bus import EmbeddedRedis

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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_on_each_redis(measure, args))
