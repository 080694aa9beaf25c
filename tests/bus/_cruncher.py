"""A consumer process whose handler keeps the event loop busy, for takeover tests.

python -m tests.bus._cruncher REDIS_URL NAMESPACE STREAM SECONDS

It takes a job, computes without yielding for SECONDS (far past the claim idle
time), then answers it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bus import Bus, BusConfig, Delivery, Message
from tests.bus.test_bus import CODEC, Done, Job
from tests.conftest import FAST


async def main(url: str, ns: str, stream: str, seconds: float) -> None:
    config = BusConfig(**{f: getattr(FAST, f) for f in FAST.__struct_fields__} | {"namespace": ns})
    async with Bus(url, CODEC, config, node_prefix="cruncher") as bus:

        async def crunch(message: Message, delivery: Delivery) -> Message | None:
            assert isinstance(message, Job)
            await bus.redis.set(f"{ns}:cruncher:took", delivery.entry_id)
            until = time.monotonic() + seconds
            while time.monotonic() < until:  # no await: the event loop is stuck here
                sum(range(1000))
            return Done(n=message.n)

        sub = bus.subscribe(stream, "workers", crunch)
        await sub.start()
        await bus.redis.set(f"{ns}:cruncher:ready", "1")
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4], float(sys.argv[4])))
