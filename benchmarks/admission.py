"""One admission (limiter and quota keeper together) through the actors, beside a bare
call of the same Lua scripts, in one run.

    python benchmarks/admission.py [--rounds 2000] [--repeat 5] [--inflight 64] [--seconds 1]

Through the actors: the router's admission step (``Admission.admit``): two asks on the
bus, answered by a ``Limiter`` and a ``QuotaKeeper`` in this process, each running its
script. The floor: the same two scripts with the same arguments, called at once with
EVALSHA on a plain redis-py client. Every limit is set (and high), so every check runs;
requests go to 1,000 users in turn. Runs on the external Redis (``REDIS_URL``, else
127.0.0.1:6379 if it answers) and on the embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from actors._admission import Admission
from actors._limits import LimiterStore
from actors._metrics import Metrics
from actors._planner import Candidate
from actors._quotas import QuotaStore
from actors.config import LIMIT_FIELDS, QUOTA_FIELDS, AdmissionConfig, LimitsConfig, QuotaConfig
from actors.limiter import Limiter
from actors.messages import CODEC, GenerateRequest
from actors.providers import Catalog
from actors.quota_keeper import QuotaKeeper
from bus import Bus, BusConfig, EmbeddedRedis

HIGH = 1e12  # a limit on every dimension, never reached
LIMITS = LimitsConfig(**dict.fromkeys(LIMIT_FIELDS, HIGH) | {"burst_window_ms": 10_000})
QUOTAS = QuotaConfig(**dict.fromkeys(QUOTA_FIELDS, HIGH))
CANDIDATES = [Candidate(provider="openai", model="gpt-4o")]


def _percentile(samples: list[float], q: int) -> float:
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


async def _measure(label: str, url: str, args: argparse.Namespace) -> None:
    ns = f"benchadm{os.getpid()}"
    async with Bus(url, CODEC, BusConfig(namespace=ns)) as bus:
        limits, quotas, metrics = LimiterStore(bus, LIMITS), QuotaStore(bus, QUOTAS), Metrics()
        actors = [Limiter(bus, limits, concurrency=512), QuotaKeeper(bus, quotas, concurrency=512)]
        for actor in actors:
            await actor.start()
        admission = Admission(bus, AdmissionConfig(), Catalog(), metrics)
        users = itertools.cycle([f"user-{i}" for i in range(1000)])
        ids = itertools.count()
        plain = Redis.from_url(url, max_connections=4 * args.inflight)  # a plain client

        async def through_actors() -> object:
            request = GenerateRequest(
                request_id=f"a{next(ids)}", user_id=next(users), prompt="Say hi.", max_tokens=64
            )
            result = await admission.admit(request, CANDIDATES)
            assert result.admitted, result
            return result

        async def bare_lua() -> object:
            request = GenerateRequest(
                request_id=f"b{next(ids)}", user_id=next(users), prompt="Say hi.", max_tokens=64
            )
            ask = admission.ask_for(request, CANDIDATES)
            lkeys, largs = limits.admit_args(ask.user_id, ask.request_id, ask.tokens, ask.cost_usd)
            _p, qkeys, qargs = quotas.admit_args(
                ask.user_id, None, ask.request_id, ask.tokens, ask.cost_usd
            )
            return await asyncio.gather(
                limits.admit_script(keys=lkeys, args=largs, client=plain),
                quotas.admit_script(keys=qkeys, args=qargs, client=plain),
            )

        runs: dict[str, list[float]] = {
            k: [] for k in ("raw_p50", "raw_p99", "adm_p50", "adm_p99", "raw_rps", "adm_rps")
        }
        for _ in range(args.repeat):
            for name, call in (("raw", bare_lua), ("adm", through_actors)):
                lat = await _latencies(call, args.rounds)
                runs[f"{name}_p50"].append(_percentile(lat, 50))
                runs[f"{name}_p99"].append(_percentile(lat, 99))
                runs[f"{name}_rps"].append(await _throughput(call, args.inflight, args.seconds))
        for actor in actors:
            await actor.stop(timeout=5.0)
        await plain.aclose()
        keys = [k async for k in bus.redis.scan_iter(match=f"{ns}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await bus.redis.delete(*keys[start : start + 1000])
    r = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"{label:9} p50 {r['adm_p50']:5.0f} us (bare Lua {r['raw_p50']:4.0f} us, "
        f"{r['adm_p50'] / r['raw_p50']:.2f}x)  p99 {r['adm_p99']:5.0f} us "
        f"(bare {r['raw_p99']:4.0f} us)  {args.inflight} in flight: {r['adm_rps']:6.0f}/s "
        f"(bare {r['raw_rps']:6.0f}/s, {r['adm_rps'] / r['raw_rps']:.2f}x)",
        flush=True,
    )


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
    parser.add_argument("--rounds", type=int, default=2000)
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
