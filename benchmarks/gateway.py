"""The whole request path against a direct call of the simulator, in one run.

    python benchmarks/gateway.py [--seconds 4] [--latencies 0,50] [--concurrency 1,16,64]
                                 [--endpoint chat|embeddings]

HTTP -> gateway -> bus -> router -> (limiter, quota keeper) -> breaker -> SDK ->
simulator -> back, with ``run.py serve`` (one process, every actor; every limit and
quota set, none reached) and ``run.py simulate`` each in a process of their own,
against an OpenAI-compatible ``POST /v1/chat/completions`` (or ``/v1/embeddings``: 16
texts of ``text-embedding-3-small``, as base64, the OpenAI SDK's default) sent to the
gateway or straight to the simulator. Reported per simulator latency
and concurrency: requests per second, the latency the gateway adds (p50, p99),
the serving process's CPU per request and its resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from actors.runtime.config import MAX_COUNT, MAX_USD

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
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int


async def _load(
    http: aiohttp.ClientSession, url: str, concurrency: int, seconds: float, body: bytes
) -> Run:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json", "Authorization": "Bearer k"}

    async def user() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    return Run(len(latencies) / wall, q[49], q[98], len(latencies))


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


def _forget(namespace: str) -> None:
    """Delete the benchmark's keys from the external Redis (the embedded one is gone)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--latencies", default="0,50")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--endpoint", choices=sorted(BODIES), default="chat")
    args = parser.parse_args()
    sim_port, gw_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {"PYTHONUNBUFFERED": "1"}
    simulator = _start(["simulate", "--port", str(sim_port), "--log-level", "error"], env)
    try:
        await _measure(args, env, simulator, sim_port, gw_port)
    finally:
        simulator.terminate()
        simulator.wait()


async def _measure(
    args: argparse.Namespace,
    env: dict[str, str],
    simulator: subprocess.Popen[str],
    sim_port: int,
    gw_port: int,
) -> None:
    sim_url = f"http://127.0.0.1:{sim_port}"
    serve_env = env | {
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"{sim_url}/v1",
        "OPENAI_DEFAULT_MODEL": "gpt-4o",
    }
    # Admission runs as in production, every limit checked, none ever reached.
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)  # noqa: SIM115
    config.write(_CONFIG + _NO_CACHE)
    config.close()
    started = time.perf_counter()
    server = _start(["serve", "--port", str(gw_port), "--log-level", "error",
                     "--config", config.name], serve_env)  # fmt: skip
    print(f"serve started in {time.perf_counter() - started:.2f} s; "
          f"Redis: {os.environ.get('REDIS_URL') or 'embedded'}")  # fmt: skip
    gateway_url = f"http://127.0.0.1:{gw_port}{PATHS[args.endpoint]}"
    direct_url = f"{sim_url}{PATHS[args.endpoint]}"
    body = BODIES[args.endpoint].encode()
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await _load(http, gateway_url, 8, 1.0, body)  # warm up
            print(f"{'upstream':>8} {'conc':>4} {'direct/s':>9} {'gateway/s':>9} {'ratio':>6} "
                  f"{'added p50':>9} {'added p99':>9} {'CPU/req':>8} {'RSS':>8}")  # fmt: skip
            for latency in (int(x) for x in args.latencies.split(",")):
                await _set_latency(http, sim_url, latency)
                for concurrency in (int(x) for x in args.concurrency.split(",")):
                    direct = await _load(http, direct_url, concurrency, args.seconds, body)
                    cpu_before = _cpu_seconds(server.pid)
                    through = await _load(http, gateway_url, concurrency, args.seconds, body)
                    cpu_ms = (_cpu_seconds(server.pid) - cpu_before) * 1000 / through.requests
                    added50 = through.p50_ms - direct.p50_ms
                    added99 = through.p99_ms - direct.p99_ms
                    print(
                        f"{latency:>6}ms {concurrency:>4} {direct.rps:>9.0f} {through.rps:>9.0f} "
                        f"{through.rps / direct.rps:>6.2f} {added50:>7.2f}ms {added99:>7.2f}ms "
                        f"{cpu_ms:>6.2f}ms {_rss_mib(server.pid):>6.0f}MiB",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait(15)
        os.unlink(config.name)
        _forget(f"bench{os.getpid()}")


if __name__ == "__main__":
    asyncio.run(main())
