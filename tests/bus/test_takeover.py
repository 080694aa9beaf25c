"""At-least-once across consumer crashes, and no takeover of work still in progress."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bus import Bus, EmbeddedRedis
from tests.bus.test_bus import CODEC, Done, Job, Recorder
from tests.conftest import FAST, PATIENCE, MakeBus, eventually

ROOT = Path(__file__).resolve().parents[2]


async def test_work_of_a_killed_consumer_is_finished_by_another(
    make_bus: MakeBus, redis_url: str
) -> None:
    asker = await make_bus(CODEC, node_prefix="asker")
    ns = asker.names.ns
    stream = f"{ns}:jobs"
    victim = subprocess.Popen(
        [sys.executable, "-m", "tests.bus._victim", redis_url, ns, stream], cwd=ROOT
    )
    try:
        # A fresh interpreter importing the project: slow on a slow machine.
        await eventually(lambda: asker.redis.get(f"{ns}:victim:ready"), timeout=2 * PATIENCE)
        ask = asyncio.create_task(asker.ask(stream, Job(n=42), timeout=PATIENCE))
        entry_id = await eventually(lambda: asker.redis.get(f"{ns}:victim:took"))
        rescuer = await make_bus(CODEC, node_prefix="rescuer")
        handler = Recorder()
        sub = rescuer.subscribe(stream, "workers", handler)
        await sub.start()
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # Taken over by the rescuer's claim, once idle for claim_idle_ms: within that plus
        # one claim interval on an idle machine. Printed, not asserted: how much longer
        # it takes on a slow or busy machine is not this test's business.
        assert await ask == Done(n=42)
        bound = (FAST.claim_idle_ms + FAST.claim_interval_ms) / 1000
        taken_after = time.monotonic() - killed_at
        print(f"taken over {taken_after:.2f}s after SIGKILL (bound {bound:.2f}s)")
        assert [(d.entry_id, d.deliveries) for d in handler.deliveries] == [(entry_id.decode(), 2)]
        await eventually(lambda: _no_pending(rescuer, stream))
        await sub.stop(1.0)
    finally:
        victim.kill()
        victim.wait()


async def test_a_long_handler_keeps_its_entry(make_bus: MakeBus) -> None:
    """A handler may run far longer than the claim idle time: its owner's heartbeat
    keeps live consumers from taking the entry over."""
    first = await make_bus(CODEC, node_prefix="first")
    second = await make_bus(CODEC, node_prefix="second")
    stream = f"{first.names.ns}:jobs"
    handler_a, handler_b = Recorder(), Recorder()
    sub_a = first.subscribe(stream, "workers", handler_a)
    await sub_a.start()
    run_for = 3 * FAST.claim_idle_ms / 1000
    ask = asyncio.create_task(first.ask(stream, Job(n=1, sleep=run_for), timeout=PATIENCE))
    await eventually(lambda: handler_a.active == 1)
    sub_b = second.subscribe(stream, "workers", handler_b)
    await sub_b.start()
    assert await ask == Done(n=1)
    assert handler_b.deliveries == []
    assert [d.deliveries for d in handler_a.deliveries] == [1]
    await sub_a.stop(1.0)
    await sub_b.stop(1.0)


async def test_a_stall_longer_than_claim_idle_takes_no_live_entry_over(
    make_bus: MakeBus,
) -> None:
    """Redis stalled (SIGSTOP) for longer than claim_idle_ms while a handler runs: each
    entry in flight looks idle when it resumes (no heartbeat reached Redis), but its live
    owner keeps it, because the other consumer, which saw the stall too, claims nothing
    until claim_idle_ms after it. (Without that, an entry answered during the stall,
    its XACK queued behind it, was taken over and run again: seen in the soak.)"""
    with EmbeddedRedis() as server:
        first = await make_bus(CODEC, url=server.url, node_prefix="first")
        second = await make_bus(CODEC, url=server.url, node_prefix="second")
        stream = f"{first.names.ns}:jobs"
        handler_a, handler_b = Recorder(), Recorder()
        sub_a = first.subscribe(stream, "workers", handler_a)
        await sub_a.start()
        # Past the command timeout (1 s), short of the name lease (3 s).
        stall_s = 2 * FAST.claim_idle_ms / 1000
        run_for = stall_s + 3 * FAST.claim_idle_ms / 1000
        ask = asyncio.create_task(first.ask(stream, Job(n=1, sleep=run_for), timeout=PATIENCE))
        await eventually(lambda: handler_a.active == 1)
        sub_b = second.subscribe(stream, "workers", handler_b)
        await sub_b.start()
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(stall_s)  # the fault's length, not a wait for a result
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert await ask == Done(n=1)
        assert handler_b.deliveries == []
        assert [d.deliveries for d in handler_a.deliveries] == [1]
        await sub_a.stop(1.0)
        await sub_b.stop(1.0)


async def _no_pending(bus: Bus, stream: str) -> bool:
    return bool((await bus.redis.xpending(stream, "workers"))["pending"] == 0)
