"""Redis fails under a running ``run.py serve``: paused (SIGSTOP) for ten seconds, and
restarted without its data. Each test starts its own Redis and serve process, drives
HTTP requests through them and measures how long the service takes to come back
(printed; the guarantees in docs/guarantees.md quote a run's figures)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec
import pytest

from actors.limits._settlement import settlement
from actors.messages import RequestCompleted
from actors.providers.simulator import Simulator
from actors.runtime.config import LIMIT_FIELDS, QUOTA_FIELDS
from bus import EmbeddedRedis
from tests._cluster import async_client
from tests.conftest import PATIENCE, eventually

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 5_000  # each request's deadline (router.request_timeout_ms)
PAUSE_S = 10.0  # the scenario: Redis stopped this long

pytestmark = pytest.mark.timeout(300)


@dataclass
class Stack:
    redis: EmbeddedRedis
    ns: str
    url: str  # the gateway's
    process: subprocess.Popen[str]


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
async def stack(
    redis_server: EmbeddedRedis, simulator: Simulator, tmp_path: Path
) -> AsyncIterator[Stack]:
    ns = f"ro{uuid.uuid4().hex[:8]}"
    config = tmp_path / "aio.toml"
    unlimited = "".join(f'{name} = "unlimited"\n' for name in LIMIT_FIELDS)
    no_quota = "".join(f'{name} = "unlimited"\n' for name in QUOTA_FIELDS
                       if name != "daily_request_limit")  # fmt: skip
    config.write_text(
        f'[bus]\nnamespace = "{ns}"\nblock_ms = 200\nclaim_idle_ms = 1000\n'
        "claim_interval_ms = 200\nconnect_timeout_ms = 500\ncommand_timeout_ms = 1000\n"
        "backoff_base_ms = 50\nbackoff_max_ms = 500\n"
        f"[router]\nrequest_timeout_ms = {TIMEOUT_MS}\n"
        f"[limits]\n{unlimited}[quota]\ndaily_request_limit = 100000\n{no_quota}"
        "[gateway]\nport = 0\n[health]\nenabled = false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {"REDIS_URL": redis_server.url, "PYTHONUNBUFFERED": "1", "OPENAI_API_KEY": "sk-o",
            "OPENAI_BASE_URL": f"{simulator.url}/v1", "AIO_ADMIN_TOKEN": "adm-outage"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--workers", "1", "--config", str(config),
         "--log-level", "error"],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = await asyncio.to_thread(process.stdout.readline)
        while line and not line.startswith("serving as"):
            line = await asyncio.to_thread(process.stdout.readline)
        assert line, "serve stopped before it was ready"
        threading.Thread(target=process.stdout.read, daemon=True).start()
        url = line.split(" on ")[1].split(";")[0].strip()
        yield Stack(redis_server, ns, url, process)
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class Load:
    """Requests sent in a loop by a few clients, each answer timed."""

    stack: Stack
    user: str
    answers: list[tuple[float, float, int, str]] = field(default_factory=list)  # sent, done
    ids: dict[str, str] = field(default_factory=dict)  # request id -> kind of its answer
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, http: aiohttp.ClientSession) -> None:
        body = {"prompt": "hello", "user_id": self.user}
        url = f"{self.stack.url}/ai-orchestration/generate"
        while not self.stop.is_set():
            sent, request_id = time.monotonic(), uuid.uuid4().hex
            async with http.post(url, json=body, headers={"X-Request-ID": request_id}) as r:
                kind = "ok" if r.status == 200 else (await r.json())["error"]["type"]
                self.answers.append((sent, time.monotonic(), r.status, kind))
                self.ids[request_id] = kind
            if r.status != 200:
                await asyncio.sleep(0.05)  # not a tight loop while Redis is away

    def ok_sent_after(self, moment: float) -> list[tuple[float, float, int, str]]:
        return [a for a in self.answers if a[0] >= moment and a[2] == 200]


async def _charged(stack: Stack, user: str) -> tuple[int, int]:
    """The requests and tokens the quota keeper has counted for ``user`` today."""
    client = async_client(stack.redis.url)
    try:
        requests = tokens = 0
        async for key in client.scan_iter(match=f"{stack.ns}:quota:{{{user}}}:day:*"):
            requests += int(await client.hget(key, "requests") or 0)
            tokens += int(await client.hget(key, "tokens") or 0)
        return requests, tokens
    finally:
        await client.aclose()


async def test_redis_paused_ten_seconds(stack: Stack) -> None:
    """Every request gets an answer by its deadline or a 503; none answered as failed
    is charged; the service is back soon after Redis resumes."""
    assert stack.redis.pid is not None
    load = Load(stack, "paused")
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_MS / 1000 + PATIENCE)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        clients = [asyncio.create_task(load.client(http)) for _ in range(4)]
        try:
            await eventually(lambda: len(load.ok_sent_after(0)) >= 10)
            stopped = time.monotonic()
            os.kill(stack.redis.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(PAUSE_S)  # the fault's length, not a wait for a result
            finally:
                os.kill(stack.redis.pid, signal.SIGCONT)
            resumed = time.monotonic()
            await eventually(lambda: len(load.ok_sent_after(resumed)) >= 10)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    assert stack.process.poll() is None  # it did not crash
    statuses = {(status, kind) for _s, _d, status, kind in load.answers}
    assert statuses <= {(200, "ok"), (503, "unavailable"), (503, "admission_unavailable"),
                        (503, "interrupted"), (504, "deadline_exceeded")}, statuses  # fmt: skip
    back = min(done for _sent, done, _st, _k in load.ok_sent_after(resumed)) - resumed
    during = [a for a in load.answers if stopped <= a[0] < resumed]
    worst = max(done - sent for sent, done, _st, _k in during)
    print(f"paused {PAUSE_S:.0f} s: {len(during)} requests sent meanwhile, "
          f"{sorted(statuses)}; the slowest answered after {worst:.2f} s; "
          f"back {back:.2f} s after the resume")  # fmt: skip
    # A 503 "unavailable" never reached a router: no completion, no charge. Every other
    # request is settled by its completion, once, even one whose completion was due
    # while Redis was stopped (sent again once it is back) or was sent twice.
    unavailable = {rid for rid, kind in load.ids.items() if kind == "unavailable"}

    async def settled_once() -> bool:
        completions = await _completions(stack)
        owed = [settlement(completions[rid], count_cache_hits=True) for rid in load.ids
                if rid in completions]  # fmt: skip
        requests = sum(counted for counted, _tokens, _cost in owed)
        tokens = sum(tokens for counted, tokens, _cost in owed if counted)
        return await _charged(stack, "paused") == (requests, tokens)

    await eventually(settled_once)
    completions = await _completions(stack)
    assert not unavailable & set(completions)
    assert set(load.ids) - set(completions) <= {r for r, k in load.ids.items() if k != "ok"}


async def _completions(stack: Stack) -> dict[str, RequestCompleted]:
    """Each request's ``request.completed`` (one per request: a second is a copy)."""
    client = async_client(stack.redis.url)
    try:
        found: dict[str, RequestCompleted] = {}
        for _id, fields in await client.xrange(f"{stack.ns}:events"):
            if fields[b"type"] == b"request.completed":
                event = msgspec.json.decode(fields[b"data"], type=RequestCompleted)
                assert found.setdefault(event.request_id, event) == event
        return found
    finally:
        await client.aclose()


async def test_redis_restarted_without_its_data(stack: Stack, simulator: Simulator) -> None:
    """Requests in flight when Redis restarts empty are answered, new requests flow
    soon after, and the process does not crash."""
    simulator.state.update("openai", {"paused": True})
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_MS / 1000 + PATIENCE)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def post(n: int) -> tuple[int, float]:
            body = {"prompt": f"in flight {n}", "user_id": "restarted"}  # not coalesced
            async with http.post(f"{stack.url}/ai-orchestration/generate", json=body) as r:
                return r.status, time.monotonic()

        in_flight = [asyncio.create_task(post(n)) for n in range(4)]
        await eventually(lambda: simulator.state.paused_calls["openai"] == 4)
        stack.redis.kill()
        stack.redis.start()  # empty: no persistence
        restarted = time.monotonic()
        simulator.state.update("openai", {"paused": False})
        answered = await asyncio.gather(*in_flight)
        load = Load(stack, "after")
        clients = [asyncio.create_task(load.client(http)) for _ in range(2)]
        try:
            await eventually(lambda: len(load.ok_sent_after(0)) >= 5)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    assert stack.process.poll() is None
    flowing = min(done for _s, done, _st, _k in load.ok_sent_after(0)) - restarted
    slowest = max(at for _status, at in answered) - restarted
    print(f"restarted empty: in-flight answers {sorted(s for s, _ in answered)}, the last "
          f"{slowest:.2f} s after the restart; new requests answered from "
          f"{flowing:.2f} s after it")  # fmt: skip
