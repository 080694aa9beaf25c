"""Redis goes away and comes back (an embedded server, killed and restarted)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from bus import Bus, BusConfig, BusUnavailable, EmbeddedRedis
from tests.bus.test_bus import CODEC, Done, Job, Recorder
from tests.conftest import FAST, PATIENCE, eventually


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as embedded:
        yield embedded


async def test_consumers_resume_and_groups_come_back(server: EmbeddedRedis) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    config = BusConfig(**{f: getattr(FAST, f) for f in FAST.__struct_fields__} | {"namespace": ns})
    stream = f"{ns}:jobs"
    async with Bus(server.url, CODEC, config) as bus:
        handler = Recorder()
        sub = bus.subscribe(stream, "workers", handler, concurrency=4)
        await sub.start()
        assert await bus.ask(stream, Job(n=1), timeout=PATIENCE) == Done(n=1)
        with capture_logs() as logs:
            server.kill()
            with pytest.raises(BusUnavailable):
                await asyncio.wait_for(bus.publish(stream, Job(n=2)), 5)
            with pytest.raises(BusUnavailable):
                await asyncio.wait_for(bus.ask(stream, Job(n=2), timeout=3), 5)
            await eventually(lambda: _said(logs, stream, "bus.unreachable"))
            # Counted where they were met (``aio_redis_errors_total{where}``).
            assert bus.redis_errors["publish"] >= 1 and bus.redis_errors["ask"] >= 1
            assert bus.redis_errors["read"] >= 1
            # Let the consumers retry a few times, backing off, so that "said once per
            # outage" below means something. A slower machine retries less in this
            # second, which makes that check weaker, never wrong.
            await asyncio.sleep(1.0)
            server.start()

            async def answered() -> bool:
                try:
                    return await bus.ask(stream, Job(n=3), timeout=5) == Done(n=3)
                except (BusUnavailable, TimeoutError):
                    return False

            await eventually(answered, timeout=2 * PATIENCE)
        events = [e["event"] for e in logs if e.get("stream") == stream]
        assert events.count("bus.unreachable") == 1  # said once per outage, not per retry
        assert "bus.group_recreated" in events
        assert "bus.reconnected" in events
        assert not sub.failed.done()
        await sub.stop(1.0)


def _said(logs: list[dict[str, Any]], stream: str, event: str) -> bool:
    return any(e["event"] == event and e.get("stream") == stream for e in logs)
