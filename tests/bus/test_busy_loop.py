"""A handler that keeps its process's event loop busy keeps its entry."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.bus.test_bus import CODEC, Done, Job, Recorder
from tests.conftest import FAST, MakeBus, eventually

ROOT = Path(__file__).resolve().parents[2]


async def test_a_computing_handler_is_not_taken_over(make_bus: MakeBus, redis_url: str) -> None:
    """The cruncher blocks its loop for three claim idle times; a live consumer of the
    same group must not take the entry over (the work would run twice)."""
    asker = await make_bus(CODEC, node_prefix="asker")
    ns = asker.names.ns
    stream = f"{ns}:jobs"
    seconds = 3 * FAST.claim_idle_ms / 1000
    cruncher = subprocess.Popen(
        [sys.executable, "-m", "tests.bus._cruncher", redis_url, ns, stream, str(seconds)],
        cwd=ROOT,
    )
    try:
        await eventually(lambda: asker.redis.get(f"{ns}:cruncher:ready"), timeout=60)
        ask = asyncio.create_task(asker.ask(stream, Job(n=7), timeout=120))
        await eventually(lambda: asker.redis.get(f"{ns}:cruncher:took"), timeout=60)
        other = await make_bus(CODEC, node_prefix="other")  # it could take it over from here
        handler = Recorder()
        sub = other.subscribe(stream, "workers", handler)
        await sub.start()
        assert await ask == Done(n=7)
        assert handler.deliveries == []  # never taken over, never run twice
        await sub.stop(1.0)
    finally:
        cruncher.kill()
        cruncher.wait()
