"""A soak: many requests through one gateway and two workers (``run.py serve``) against
the simulator, with faults along the way, and an accounting at the end.

    python benchmarks/soak.py [--requests 100000] [--concurrency 32] [--users 16]

Its own Redis (started here, so it can be paused), the simulator and three ``serve``
processes (a gateway, two workers) on loopback. Faults, at fixed shares of the run: a
worker SIGKILLed (and started again) at 25 %, Redis paused for 5 s (SIGSTOP, SIGCONT)
at 50 %, OpenAI failing for 10 s (the simulator answers 500s; requests fall back to
Anthropic) at 75 %. Reported: throughput and latency percentiles per tenth of the
run, each process's resident memory after the first tenth and at the end, entries
left pending in every group, and the accounting: every request answered (by status),
and each user's requests charged (its daily_requests quota) against what it sent
that ran.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bus import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "soak-admin-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _start(
    args: list[str], env: dict[str, str], ready: str = ""
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert process.stdout is not None
    seen = []
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"run.py {args[0]} stopped before it was ready:\n" + "".join(seen))
        seen.append(line)
        if line.startswith(ready):
            break
    threading.Thread(target=process.stdout.read, daemon=True).start()  # never a full pipe
    return process, line


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ns = f"soak{uuid.uuid4().hex[:8]}"
        self.statuses: collections.Counter[str] = collections.Counter()
        self.sent: collections.Counter[str] = collections.Counter()  # per user
        self.not_run: collections.Counter[str] = collections.Counter()  # per user
        self.samples: list[tuple[float, float]] = []  # (seconds into the run, latency ms)
        self.done = 0
        self.restarted: set[str] = set()
        self.marks: list[tuple[int, asyncio.Event]] = []  # when each fault may start
        self.refused_ids: dict[str, tuple[str, str]] = {}  # never run: id -> user, why

    async def run(self) -> None:
        data = tempfile.mkdtemp(prefix="soak-redis-")
        store = EmbeddedRedis(data_dir=data)
        store.start()
        self.redis_pid = store.pid
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
        env |= {"PYTHONUNBUFFERED": "1", "REDIS_URL": store.url, "AIO_ADMIN_TOKEN": ADMIN}
        sim_port, gw_port = _free_port(), _free_port()
        self.sim = f"http://127.0.0.1:{sim_port}"
        simulator, _ = _start(["simulate", "--port", str(sim_port), "--log-level", "error"], env)
        config = Path(data) / "soak.toml"
        config.write_text(
            f'[bus]\nnamespace = "{self.ns}"\n[cache]\nenabled = false\n'
            "[health]\nenabled = false\n"
            '[limits]\nrequests_per_minute = "unlimited"\nrequests_per_hour = "unlimited"\n'
            'tokens_per_minute = "unlimited"\ntokens_per_hour = "unlimited"\n'
            'cost_per_minute = "unlimited"\ncost_per_hour = "unlimited"\n'
            'burst_limit = "unlimited"\n'
            '[quota]\ndaily_request_limit = 10000000\nmonthly_request_limit = "unlimited"\n'
            'daily_token_limit = "unlimited"\nmonthly_token_limit = "unlimited"\n'
            'daily_cost_limit = "unlimited"\nmonthly_cost_limit = "unlimited"\n'
        )
        serve_env = env | {
            "OPENAI_API_KEY": "sk-soak", "OPENAI_BASE_URL": f"{self.sim}/v1",
            "ANTHROPIC_API_KEY": "sk-soak-a", "ANTHROPIC_BASE_URL": self.sim,
        }  # fmt: skip
        common = ["--workers", "1", "--config", str(config), "--log-level", "error"]
        worker = ["serve", "--role", "worker", *common]
        self.spawn_worker = lambda name: _start(worker, serve_env | {"HOSTNAME": name},
                                                "serving")[0]  # fmt: skip
        gateway, _line = _start(["serve", "--role", "gateway", "--port", str(gw_port), *common],
                               serve_env, "serving")  # fmt: skip
        self.workers = [self.spawn_worker("w1"), self.spawn_worker("w2")]
        self.gateway = gateway
        self.url = f"http://127.0.0.1:{gw_port}"
        try:
            await self._drive()
            await self._report(store.url)
        finally:
            for process in [gateway, *self.workers, simulator]:
                if process.poll() is None:
                    process.terminate()
            for process in [gateway, *self.workers, simulator]:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            store.stop()

    async def _drive(self) -> None:
        total, users = self.args.requests, self.args.users
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(total):
            queue.put_nowait(n)
        self.rss_first: dict[str, float] = {}
        self.started = time.perf_counter()
        faults = asyncio.get_running_loop().create_task(self._faults(total))
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:

            async def lane() -> None:
                while not queue.empty():
                    n = queue.get_nowait()
                    await self._one(http, n, f"soak-user-{n % users}")

            await asyncio.gather(*(lane() for _ in range(self.args.concurrency)))
        self.wall = time.perf_counter() - self.started
        await faults

    async def _faults(self, total: int) -> None:
        """One after the other, each once the run has got that far."""
        for share, fault in ((4, self._kill_worker), (2, self._pause_redis),
                             (4 / 3, self._fail_openai)):  # fmt: skip
            reached = asyncio.Event()
            self.marks.append((int(total / share), reached))
            await reached.wait()
            await fault()

    async def _one(self, http: aiohttp.ClientSession, n: int, user: str) -> None:
        body = {"model": "gpt-4o", "user": user, "max_tokens": 16,
                "messages": [{"role": "user", "content": f"question {n}: why soak?"}]}  # fmt: skip
        started = time.perf_counter()
        self.sent[user] += 1
        try:
            async with http.post(f"{self.url}/v1/chat/completions", json=body) as response:
                answer = await response.json(content_type=None)
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.statuses[f"client {type(exc).__name__}"] += 1
            return
        code = (answer.get("error") or {}).get("code", "") if status != 200 else ""
        self.statuses[f"{status} {code}".strip()] += 1
        if status == 503 and code in ("unavailable", "admission_unavailable"):
            self.not_run[user] += 1  # never run (the bus or admission refused): not charged
            self.refused_ids[response.headers.get("X-Request-ID", "")] = (user, code)
        now = time.perf_counter()
        self.samples.append((now - self.started, (now - started) * 1000))
        self.done += 1
        for mark, reached in self.marks:
            if self.done >= mark:
                reached.set()
        if self.done == self.args.requests // 10:
            self.rss_first = self._rss()

    def _rss(self) -> dict[str, float]:
        found = {"gateway": _rss_mib(self.gateway.pid)}
        for i, worker in enumerate(self.workers):
            if worker.poll() is None:
                found[f"worker{i + 1}"] = _rss_mib(worker.pid)
        return found

    async def _kill_worker(self) -> None:
        print("fault: worker 1 SIGKILLed, started again", flush=True)
        self.workers[0].send_signal(signal.SIGKILL)
        self.workers[0].wait()
        self.workers[0] = await asyncio.to_thread(self.spawn_worker, "w1")
        self.restarted.add("worker1")  # its memory is a new process's

    async def _pause_redis(self) -> None:
        print("fault: Redis paused 5 s", flush=True)
        assert self.redis_pid is not None
        os.kill(self.redis_pid, signal.SIGSTOP)
        await asyncio.sleep(5)
        os.kill(self.redis_pid, signal.SIGCONT)

    async def _fail_openai(self) -> None:
        print("fault: OpenAI failing 10 s", flush=True)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.sim}/_sim/knobs/openai", json={"error_rate": 1}) as r:
                r.raise_for_status()
            await asyncio.sleep(10)
            async with http.post(f"{self.sim}/_sim/knobs/openai", json={"error_rate": 0}) as r:
                r.raise_for_status()

    async def _report(self, redis_url: str) -> None:
        total = sum(self.statuses.values())
        print(f"\n{total} requests in {self.wall:.0f} s ({total / self.wall:.0f}/s), "
              f"concurrency {self.args.concurrency}")  # fmt: skip
        print(f"{'tenth':>5} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
              "   (tenths of the run's time; by when each answer came)")  # fmt: skip
        span = self.wall / 10
        for i in range(10):
            found = [ms for t, ms in self.samples if i * span <= t < (i + 1) * span]
            if len(found) < 2:
                print(f"{i + 1:>5} {len(found) / span:>7.0f}")
                continue
            q = statistics.quantiles(found, n=100)
            print(f"{i + 1:>5} {len(found) / span:>7.0f} {q[49]:>8.1f} {q[98]:>8.1f} "
                  f"{max(found):>8.0f}")  # fmt: skip
        print("statuses:", dict(self.statuses.most_common()))
        end = self._rss()
        for name, first in self.rss_first.items():
            last = end.get(name)
            if last is not None and name not in self.restarted:
                print(f"memory {name}: {first:.0f} MiB after the first tenth, {last:.0f} MiB at "
                      f"the end ({(last / first - 1) * 100:+.1f} %)")  # fmt: skip
        client = redis.Redis.from_url(redis_url)

        def pending() -> int:
            left = 0
            for key in client.scan_iter(match=f"{self.ns}:*", _type="stream"):
                for group in client.xinfo_groups(key):
                    left += int(group["pending"])
            return left

        # Entries a killed worker held are taken over after claim_idle_ms (5 s): wait
        # for them (and the last settlements), at most 30 s.
        waited, at_stop = time.perf_counter(), pending()
        for _ in range(60):
            if not pending():
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1)
        after = time.perf_counter() - waited
        print(f"pending entries left in every group: {pending()} (after {after:.1f} s; "
              f"{at_stop} when the load stopped)")  # fmt: skip
        async with aiohttp.ClientSession() as http:
            charged, expected = 0, 0
            for user, sent in sorted(self.sent.items()):
                url = f"{self.url}/ai-orchestration/quotas/{user}"
                headers = {"Authorization": f"Bearer {ADMIN}"}
                async with http.get(url, headers=headers) as response:
                    rows = {r["quota_type"]: r for r in (await response.json())["quotas"]}
                charged += int(rows["daily_requests"]["used"])
                expected += sent - self.not_run[user]
        verdict = "each once" if charged == expected else "MISMATCH"
        print(f"accounting: {expected} requests ran, {charged} charged "
              f"({charged - expected:+d}: {verdict})")  # fmt: skip
        # A request refused (never run) that holds a quota reservation all the same (open:
        # charged until it expires; settled: it ran), by why it was refused.
        held: collections.Counter[str] = collections.Counter()
        for request_id, (user, why) in self.refused_ids.items():
            for _held_id, value in client.hscan_iter(
                f"{self.ns}:quota:{{{user}}}:reservations", match=f"{request_id}@*"
            ):
                state = value.rsplit(b" ", 1)[-1].decode()
                if state != "released":
                    held[f"{why} {state}"] += 1
        if held:
            print(f"refused requests with a quota reservation (why, its state): {dict(held)}")
        dead = client.xlen(f"{self.ns}:dead") if client.exists(f"{self.ns}:dead") else 0
        print(f"dead-lettered entries: {dead}")
        keys = list(client.scan_iter(match=f"{self.ns}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=16)
    asyncio.run(Soak(parser.parse_args()).run())


if __name__ == "__main__":
    main()
