"""What an open dashboard costs the deployment it watches.

    python benchmarks/dashboard.py [--users 1000,10000] [--rounds 50]

``run.py serve --workers 1`` (its embedded Redis) and ``run.py simulate`` in processes
of their own. For each number of users, that many users each make one request through
``POST /v1/chat/completions`` (one at a time, to measure a request's CPU), then each
read the dashboard makes is repeated ``--rounds`` times, one at a time: the stats,
health, breakers, the timeline (the hour, and its last minute), a page of 20 users,
the same page with its users' quotas and rate limits (``limits=true``), the alerts,
the bus; and those limits asked user by user (40 calls, as before ``limits=true``).
A metrics actor keeps a timeline it read for a second, so those rounds measure the
path around the read (and their p50 is that path's); the read itself is measured
apart, in this process, on an hour of steady traffic (30 requests a step over two
providers) in a Redis of its own, and added to their CPU. Reported: the CPU of
serve's process (gateway and actors) and of its Redis per read, its latency p50, and
a whole poll (as the page polls: every read once, but the page with limits every
third poll and the whole hour's timeline every thirtieth) as a number of chat
requests, and as a share of one core at one poll each two seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gateway as gw  # its process helpers

from actors.messages import Attempt, RequestCompleted
from actors.metrics._timeline import TimelineBook
from bus import EmbeddedRedis

TOKEN = "adm-bench"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
READS = {
    "stats": "/ai-orchestration/stats",
    "health": "/ai-orchestration/health",
    "breakers": "/ai-orchestration/circuit-breakers",
    "timeline, the hour": "/ai-orchestration/monitoring/timeline?minutes=60",
    "timeline, a minute": "/ai-orchestration/monitoring/timeline?minutes=1",
    "users page": "/ai-orchestration/users?sort=cost&limit=20",
    "page with limits": "/ai-orchestration/users?sort=cost&limit=20&limits=true",
    "alerts": "/ai-orchestration/alerts?limit=50",
    "bus": "/ai-orchestration/bus",
}


def _cpu(pids: list[int]) -> float:
    return sum(gw._cpu_seconds(pid) for pid in pids)


async def _measure(
    http: aiohttp.ClientSession, base: str, paths: list[str], serve: list[int],
    redis: list[int], rounds: int,
) -> tuple[float, float, float]:  # fmt: skip
    """CPU ms of serve and of Redis per round (every path once), and the p50 ms."""
    latencies = []
    serve_before, redis_before = _cpu(serve), _cpu(redis)
    for _ in range(rounds):
        started = time.perf_counter()
        for path in paths:
            async with http.get(base + path, headers=ADMIN) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status}")
        latencies.append((time.perf_counter() - started) * 1000)
    return ((_cpu(serve) - serve_before) * 1000 / rounds,
            (_cpu(redis) - redis_before) * 1000 / rounds, statistics.median(latencies))  # fmt: skip


async def _chat_cpu(http: aiohttp.ClientSession, base: str, users: int, serve: list[int]) -> float:
    """Each user one request; the serve process's CPU ms per request."""
    before = _cpu(serve)
    for n in range(users):
        body = {"model": "gpt-4o-mini", "user": f"user-{n:06d}",
                "messages": [{"role": "user", "content": f"question {n}"}]}  # fmt: skip
        async with http.post(f"{base}/v1/chat/completions", json=body) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"chat: HTTP {response.status}")
    return (_cpu(serve) - before) * 1000 / users


async def timeline_reads(rounds: int) -> dict[int, float]:
    """CPU ms of one ``TimelineBook.read`` of the hour (60) and of a minute (1)."""
    server = EmbeddedRedis()
    server.start()
    redis = Redis.from_url(server.url)
    try:
        book = TimelineBook("bench")
        now_ms = int(time.time() * 1000)
        for step in range(360):
            for n in range(30):
                call = Attempt(provider=("openai", "anthropic")[n % 2], model="m",
                               outcome="ok", latency_ms=20 + 7 * n)  # fmt: skip
                book.observe(RequestCompleted(request_id="r", user_id="u", outcome="ok",
                                              latency_ms=25 + 7 * n, cost_usd=0.001,
                                              ts_ms=now_ms - 10_000 * step,
                                              attempts=[call]))  # fmt: skip
        pipe = redis.pipeline(transaction=False)
        book.drain(pipe)
        await pipe.execute()
        found = {}
        for minutes in (60, 1):
            began = time.process_time()
            for _ in range(rounds):
                await book.read(redis, now_ms, minutes)
            found[minutes] = (time.process_time() - began) * 1000 / rounds
        return found
    finally:
        await redis.aclose()
        server.stop()


async def run(user_counts: list[int], rounds: int) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_BASE_URL")) and k != "REDIS_URL"}  # fmt: skip
    env |= {"PYTHONUNBUFFERED": "1"}
    sim_port = gw._free_port()
    simulator = gw._start(["simulate", "--port", str(sim_port), "--log-level", "error"], env)
    serve_env = env | {"OPENAI_API_KEY": "sk-bench", "AIO_ADMIN_TOKEN": TOKEN,
                       "OPENAI_BASE_URL": f"http://127.0.0.1:{sim_port}/v1"}  # fmt: skip
    try:
        reads = await timeline_reads(rounds)
        print(f"a timeline read in the metrics actor, an hour of steady traffic: the hour "
              f"{reads[60]:.2f} ms CPU, a minute {reads[1]:.2f} ms")  # fmt: skip
        async with aiohttp.ClientSession() as http:
            for users in user_counts:
                await _one_deployment(http, serve_env, users, rounds, reads)
    finally:
        simulator.terminate()
        simulator.wait()


async def _one_deployment(
    http: aiohttp.ClientSession, env: dict[str, str], users: int, rounds: int,
    reads: dict[int, float],
) -> None:  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
        config.write(gw._CONFIG + "[cache]\nenabled = false\n")
    port = gw._free_port()
    server = gw._start(["serve", "--workers", "1", "--port", str(port), "--log-level", "error",
                        "--config", config.name], env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        tree = gw._tree(server.pid)
        serve, redis = [server.pid], [pid for pid in tree if pid != server.pid]
        chat_ms = await _chat_cpu(http, base, users, serve)
        async with http.get(base + READS["users page"], headers=ADMIN) as response:
            page = [u["user_id"] for u in (await response.json())["users"]]
        per_user = [f"/ai-orchestration/{kind}/{user}" for user in page
                    for kind in ("quotas", "rate-limits")]  # fmt: skip
        print(f"\n{users} users; a chat request: {chat_ms:.2f} ms CPU of serve")
        print(f"{'read':>22} {'serve CPU':>10} {'Redis CPU':>10} {'p50':>8} {'x chat':>7}")
        poll_serve = poll_redis = 0.0
        for name, path in [*READS.items(), ("limits, user by user", None)]:
            paths = per_user if path is None else [path]
            cpu, redis_cpu, p50 = await _measure(http, base, paths, serve, redis, rounds)
            # As the page polls: the page of users, with their limits every third
            # poll; the timeline's last minute, the hour every thirtieth (each read
            # afresh: the path measured here plus the read measured apart).
            fresh = {"timeline, the hour": reads[60], "timeline, a minute": reads[1]}
            cpu += fresh.get(name, 0.0)
            share = {
                "users page": 2 / 3,
                "page with limits": 1 / 3,
                "timeline, the hour": 1 / 30,
                "timeline, a minute": 29 / 30,
            }.get(name, 1.0)
            if path is not None:
                poll_serve += cpu * share
                poll_redis += redis_cpu * share
            print(f"{name:>22} {cpu:>8.2f}ms {redis_cpu:>8.2f}ms {p50:>6.2f}ms "
                  f"{cpu / chat_ms:>7.2f}")  # fmt: skip
        print(f"{'a poll (2 s)':>22} {poll_serve:>8.2f}ms {poll_redis:>8.2f}ms {'':>8} "
              f"{poll_serve / chat_ms:>7.2f}   = {poll_serve / 20:.2f}% of a core "
              f"(+{poll_redis / 20:.2f}% Redis) per open dashboard")  # fmt: skip
    finally:
        server.terminate()
        server.wait(15)
        os.unlink(config.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run([int(n) for n in args.users.split(",")], args.rounds))


if __name__ == "__main__":
    main()
