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
import itertools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import compare, forget, main, report
from redis.asyncio import Redis

from actors.limits._limiter_store import LimiterStore
from actors.limits._quota_store import QuotaStore
from actors.limits.limiter import Limiter
from actors.limits.quota_keeper import QuotaKeeper
from actors.messages import CODEC, GenerateRequest
from actors.providers import Catalog
from actors.routing import Admission
from actors.routing._planner import Candidate
from actors.runtime._metrics import Metrics
from actors.runtime.config import (
    LIMIT_FIELDS,
    QUOTA_FIELDS,
    AdmissionConfig,
    LimitsConfig,
    QuotaConfig,
)
from bus import Bus, BusConfig

HIGH = 1e12  # a limit on every dimension, never reached
LIMITS = LimitsConfig(**dict.fromkeys(LIMIT_FIELDS, HIGH) | {"burst_window_ms": 10_000})
QUOTAS = QuotaConfig(**dict.fromkeys(QUOTA_FIELDS, HIGH))
CANDIDATES = [Candidate(provider="openai", model="gpt-4o")]


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

        r = await compare(bare_lua, through_actors, args)
        for actor in actors:
            await actor.stop(timeout=5.0)
        await plain.aclose()
        await forget(bus.redis, ns)
    report(label, r, "bare Lua", args.inflight)


if __name__ == "__main__":
    main(__doc__, _measure, rounds=2000)
