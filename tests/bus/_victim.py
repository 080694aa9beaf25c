"""A consumer process for takeover tests: it takes a job and hangs on it until killed.

python -m tests.bus._victim REDIS_URL NAMESPACE STREAM
"""

from __future__ import annotations

import asyncio
import sys

from bus import Bus, BusConfig, Delivery, Message
from tests.bus.test_bus import CODEC
from tests.conftest import FAST


async def main(url: str, ns: str, stream: str) -> None:
    config = BusConfig(**{f: getattr(FAST, f) for f in FAST.__struct_fields__} | {"namespace": ns})
    async with Bus(url, CODEC, config, node_prefix="victim") as bus:

        async def hang(message: Message, delivery: Delivery) -> Message | None:
            await bus.redis.set(f"{ns}:victim:took", delivery.entry_id)
            await asyncio.sleep(3600)
            return None

        sub = bus.subscribe(stream, "workers", hang)
        await sub.start()
        await bus.redis.set(f"{ns}:victim:ready", "1")
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
