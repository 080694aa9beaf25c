"""The whole request path against a direct call of the simulator, and against peer
gateways, in one run.

    python benchmarks/gateway.py [--seconds 4] [--latencies 0,50] [--concurrency 1,16,64]
                                 [--endpoint chat|embeddings] [--workers 1,2]
                                 [--peers litellm,portkey] [--client wrk|python]

HTTP -> gateway -> bus -> router -> (limiter, quota keeper) -> breaker -> SDK ->
simulator -> back, with ``run.py serve`` (``--workers N`` processes, every actor; every
limit and quota set, none reached) and ``run.py simulate`` each in processes of their
own, against an OpenAI-compatible ``POST /v1/chat/completions`` (or ``/v1/embeddings``:
16 texts of ``text-embedding-3-small``, as base64, the OpenAI SDK's default) sent to
the gateway or straight to the simulator. With ``--peers``, LiteLLM's proxy and
Portkey's gateway (pinned, installed on first use under benchmarks/.peers/, see
_peers.py) front the same simulator, and each load runs on each target in turn
(direct, ours, peers) so that all share the machine's state of the moment.

Reported per simulator latency and concurrency and target: requests per second and
their share of direct, the latency it adds (p50, p99), its CPU per request (ours: every
process of the serve tree; "+redis": what Redis spent on it) and its resident memory
(per process). Before the loads: start to first answer of each target, and the bare
Redis Streams round trip (XADD, XREADGROUP, XADD, XREAD) on the same Redis, the floor
of a request that crosses the bus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _peers import start_peer
from _timing import RawEcho, latencies

from actors.runtime.config import MAX_COUNT, MAX_USD
from bus import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Why does a gateway need a breaker?"
BODIES = {
    "chat": json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": QUESTION}]}),
    "embeddings": json.dumps({"model": "text-embedding-3-small", "encoding_format": "base64",
                              "input": [f"{QUESTION} ({n})" for n in range(16)]}),
}  # fmt: skip
PATHS = {"chat": "/v1/chat/completions", "embeddings": "/v1/embeddings"}
TICKS = os.sysconf("SC_CLK_TCK")
_CONFIG = (
    f'[bus]\nnamespace = "bench{os.getpid()}"\n'  # its own keys, deleted afterwards
    "[limits]\n"
    + "".join(f"{name} = {MAX_USD if 'cost' in name else MAX_COUNT:g}\n" for name in (
        "requests_per_minute", "requests_per_hour", "tokens_per_minute", "tokens_per_hour",
        "cost_per_minute", "cost_per_hour", "burst_limit"))
    + "[quota]\n"
    + "".join(f"{period}_{dim}_limit = {MAX_USD if dim == 'cost' else MAX_COUNT:g}\n"
              for period in ("monthly", "daily", "per_session")
              for dim in ("request", "token", "cost"))
)  # fmt: skip


# The same question each time: without this, all but the first would be cache hits
# (benchmarks/cache.py measures those).
_NO_CACHE = "[cache]\nenabled = false\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # exited meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss_mib(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it (serve's workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        todo.extend(int(child) for child in children)
    return found


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    pids: Callable[[], list[int]]  # whose CPU and memory count
    ready_s: float = 0.0

    def cpu(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids())

    def rss(self) -> str:
        """Resident memory per process (the largest, and how many processes)."""
        sizes = [_rss_mib(pid) for pid in self.pids()]
        sizes = [size for size in sizes if size > 1]  # the parent's share counts too
        if len(sizes) <= 1:
            return f"{sum(sizes):.0f}MiB"
        return f"{max(sizes):.0f}MiBx{len(sizes)}"


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int


async def _load(
    http: aiohttp.ClientSession, target: Target, concurrency: int, seconds: float, body: bytes
) -> Run:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def user() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with http.post(target.url, data=body, headers=target.headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(
                        f"{target.name}: HTTP {response.status}: {await response.text()}"
                    )
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    return Run(len(latencies) / wall, q[49], q[98], len(latencies))


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


async def _load_wrk(target: Target, concurrency: int, seconds: float, body: bytes) -> Run:
    """The same load from wrk (C, one thread): the client takes far less of the
    machine's CPU than aiohttp's, which on 2 cores competes with what is measured."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
    headers = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n"
                      for k, v in target.headers.items())  # fmt: skip
    script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n{headers}')
    script.close()
    try:
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
            "-s", script.name, target.url, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out = (await process.communicate())[0].decode()
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out or process.returncode:
        raise RuntimeError(f"{target.name}: wrk saw failures:\n{out}")
    quantiles = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            number = parts[1].rstrip("usm")
            unit = parts[1][len(number) :]
            quantiles[parts[0]] = float(number) * _WRK_UNITS[unit]
    rps = float(out.split("Requests/sec:")[1].split()[0])
    requests = int(out.split(" requests in ")[0].split()[-1])
    return Run(rps, quantiles["50%"], quantiles["99%"], requests)


async def _set_latency(http: aiohttp.ClientSession, simulator: str, latency_ms: int) -> None:
    async with http.post(f"{simulator}/_sim/knobs/openai", json={"latency_ms": latency_ms}) as r:
        r.raise_for_status()


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "run.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"run.py {args[0]} did not start")
    # Keep reading what it prints, so that a full pipe never blocks it.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process


def _first_answer_s(url: str, headers: dict[str, str], body: bytes, started: float) -> float:
    """Seconds from ``started`` to the first 200 from ``url`` (polled every 10 ms)."""
    while time.perf_counter() - started < 60:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:  # not listening yet, or not ready
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url}: no answer within 60 s")


class RedisCpu:
    """CPU seconds Redis has spent (INFO cpu: its main thread and the rest)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def __call__(self) -> float:
        cpu = self.client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _bare_round_trip_ms(url: str) -> float:
    """p50 of one bare Redis Streams round trip, one at a time (benchmarks/bus.py's floor)."""
    echo = RawEcho(url, f"bench{os.getpid()}")
    await echo.start()
    try:
        samples = await latencies(echo.call, 2000)
    finally:
        await echo.stop()
    return statistics.median(samples) / 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--latencies", default="0,50")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--endpoint", choices=sorted(BODIES), default="chat")
    parser.add_argument("--workers", default="1", help="serve --workers N, each N a target")
    parser.add_argument("--peers", default="", help="comma-separated: litellm, portkey")
    parser.add_argument(
        "--client",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="the load's client: wrk (apt install wrk; the default when installed) or aiohttp",
    )
    args = parser.parse_args()
    peers = [name for name in args.peers.split(",") if name]
    if peers and args.endpoint != "chat":
        parser.error("--peers measure chat completions only")
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {"PYTHONUNBUFFERED": "1"}
    with contextlib.ExitStack() as stack:
        if not env.get("REDIS_URL"):  # one of our own, so that its CPU is known
            env["REDIS_URL"] = stack.enter_context(EmbeddedRedis()).url
        sim_port = _free_port()
        simulator = _start(["simulate", "--port", str(sim_port), "--log-level", "error"], env)
        stack.callback(simulator.wait)
        stack.callback(simulator.terminate)
        await _measure(args, env, f"http://127.0.0.1:{sim_port}", peers, stack)


async def _measure(
    args: argparse.Namespace,
    env: dict[str, str],
    sim_url: str,
    peers: list[str],
    stack: contextlib.ExitStack,
) -> None:
    body = BODIES[args.endpoint].encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer k"}
    path = PATHS[args.endpoint]
    direct = Target("direct", f"{sim_url}{path}", headers, lambda: [])
    targets = [direct] + [_serve(args, int(n), env, sim_url, body, headers, stack)
                          for n in args.workers.split(",")]  # fmt: skip
    for name in peers:
        peer = await asyncio.to_thread(start_peer, name, f"{sim_url}/v1", _free_port())
        stack.callback(peer.stop)
        targets.append(Target(peer.name, peer.url, peer.headers, lambda p=peer.pid: [p],
                              peer.ready_s))  # fmt: skip
    redis_cpu = RedisCpu(env["REDIS_URL"])
    bare = await _bare_round_trip_ms(env["REDIS_URL"])
    print(f"Redis: {os.environ.get('REDIS_URL') or 'embedded'}; bare Redis Streams round "
          f"trip p50 {bare:.3f} ms; client: {args.client}")  # fmt: skip
    for target in targets[1:]:
        print(f"{target.name}: start to first answer {target.ready_s:.2f} s")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        for target in targets[1:]:
            await _load(http, target, 8, 1.0, body)  # warm up
        print(f"{'target':>16} {'upstream':>8} {'conc':>4} {'req/s':>7} {'share':>5} "
              f"{'added p50':>9} {'added p99':>9} {'CPU/req':>8} {'+redis':>7} "
              f"{'RSS':>9}")  # fmt: skip
        for latency in (int(x) for x in args.latencies.split(",")):
            await _set_latency(http, sim_url, latency)
            for concurrency in (int(x) for x in args.concurrency.split(",")):
                base: Run | None = None
                for target in targets:
                    cpu_before, redis_before = target.cpu(), redis_cpu()
                    run = await (
                        _load(http, target, concurrency, args.seconds, body)
                        if args.client == "python"
                        else _load_wrk(target, concurrency, args.seconds, body)
                    )
                    cpu_ms = (target.cpu() - cpu_before) * 1000 / run.requests
                    redis_ms = (redis_cpu() - redis_before) * 1000 / run.requests
                    if base is None:
                        base = run
                        print(f"{target.name:>16} {latency:>6}ms {concurrency:>4} "
                              f"{run.rps:>7.0f} {1:>5.2f} {'':>9} {'':>9} {'':>8} {'':>7}",
                              flush=True)  # fmt: skip
                        continue
                    print(
                        f"{target.name:>16} {latency:>6}ms {concurrency:>4} {run.rps:>7.0f} "
                        f"{run.rps / base.rps:>5.2f} {run.p50_ms - base.p50_ms:>7.2f}ms "
                        f"{run.p99_ms - base.p99_ms:>7.2f}ms {cpu_ms:>6.2f}ms "
                        f"{redis_ms:>5.2f}ms {target.rss():>9}",
                        flush=True,
                    )


def _serve(
    args: argparse.Namespace,
    workers: int,
    env: dict[str, str],
    sim_url: str,
    body: bytes,
    headers: dict[str, str],
    stack: contextlib.ExitStack,
) -> Target:
    """Ours: ``run.py serve --workers N`` in front of the simulator, every limit checked."""
    serve_env = env | {
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"{sim_url}/v1",
        "OPENAI_DEFAULT_MODEL": "gpt-4o",
    }
    # Admission runs as in production, every limit checked, none ever reached.
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)  # noqa: SIM115
    namespace = f"bench{os.getpid()}w{workers}"  # each serve its own streams and groups
    config.write(_CONFIG.replace(f"bench{os.getpid()}", namespace) + _NO_CACHE)
    config.close()
    stack.callback(_forget, env["REDIS_URL"], namespace)  # once it has stopped
    stack.callback(os.unlink, config.name)
    port = _free_port()
    started = time.perf_counter()
    server = _start(["serve", "--port", str(port), "--log-level", "error", "--config",
                     config.name, "--workers", str(workers)], serve_env)  # fmt: skip
    stack.callback(server.wait, 15)
    stack.callback(server.terminate)
    url = f"http://127.0.0.1:{port}{PATHS[args.endpoint]}"
    ready = _first_answer_s(url, headers, body, started)
    name = f"ours x{workers}" if workers > 1 else "ours"
    return Target(name, url, headers, lambda: _tree(server.pid), ready)


def _forget(url: str, namespace: str) -> None:
    """Delete the benchmark's keys."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


if __name__ == "__main__":
    asyncio.run(main())
