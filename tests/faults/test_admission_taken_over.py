"""A worker that dies holding admission asks: the requests are still admitted (the
unanswered ask is sent again, to a live limiter) and each is charged once, also
when the dead worker's entry is taken over and run later."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from actors.client import Client, GenerateRequest
from actors.messages import GenerateResponse, limiter_stream
from actors.runtime.config import AdmissionConfig
from tests.conftest import PATIENCE, eventually
from tests.limits.conftest import limits, quotas, user
from tests.limits.test_exactness import _counted
from tests.request_path.conftest import MakeNode

# A consumer of the limiters' group that takes asks and never answers: a worker that
# took them and then died (SIGKILLed by the test once it holds some).
_THIEF = """
import sys, redis
client = redis.Redis.from_url(sys.argv[1])
while True:
    taken = client.xreadgroup("limiter", "thief", {sys.argv[2]: ">"}, count=1, block=50)
    if taken:
        print(len(taken[0][1]), flush=True)
"""


async def test_asks_held_by_a_dead_worker_are_answered_by_a_live_one(
    make_node: MakeNode, server_url: str
) -> None:
    node = await make_node(
        providers=("openai",),
        limits=limits(requests_per_minute=1000),
        quota=quotas(daily_request_limit=1000),
        admission=AdmissionConfig(timeout_ms=1_000),
    )
    client, uid = Client(node.bus), user()
    thief = subprocess.Popen(
        [sys.executable, "-c", _THIEF, server_url, limiter_stream(node.bus.names)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert thief.stdout is not None
    answers: list[object] = []

    async def ask() -> None:
        answers.append(await client.generate(GenerateRequest(prompt="hi", user_id=uid)))

    try:
        sent: list[asyncio.Task[None]] = []
        held = asyncio.ensure_future(asyncio.to_thread(thief.stdout.readline))
        while not held.done():  # requests until the thief holds an ask
            sent.append(asyncio.create_task(ask()))
            await asyncio.wait(
                [held, *sent[-1:]], timeout=PATIENCE, return_when=asyncio.FIRST_COMPLETED
            )
            assert len(sent) < 200, "the thief took no ask"
        thief.send_signal(signal.SIGKILL)  # it dies holding the ask
        await asyncio.wait_for(asyncio.gather(*sent), PATIENCE)
    finally:
        if thief.poll() is None:
            thief.kill()
        thief.wait()
    assert all(isinstance(a, GenerateResponse) for a in answers), answers
    assert node.metrics.value("aio_admission_retries_total") >= 1

    # The dead worker's entry is taken over (after claim_idle_ms) and run: a dup.
    async def settled() -> bool:
        info = await node.bus.redis.xpending(limiter_stream(node.bus.names), "limiter")
        return int(info["pending"]) == 0

    await eventually(settled)
    assert await _counted(node, uid) == (len(answers), len(answers))
