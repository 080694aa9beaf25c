"""What the cache saves, through the whole HTTP path, and how fast the semantic index is.

    python benchmarks/cache.py [--requests 400] [--vectors 10000,100000]

``run.py serve`` and ``run.py simulate`` in processes of their own (as
``benchmarks/gateway.py``), one request at a time to ``POST /v1/chat/completions``:

- provider call: ``X-Cache: no-cache``, so every request goes through the breaker and
  the SDK to the simulator (0 ms latency);
- miss: a new question each time (the lookup misses, the provider answers, the answer
  is stored off the path);
- L1 hit: the same question again (this process's memory);
- L2 hit: the same question again, in a serve whose memory holds nothing
  (``cache.l1_max_entries = 0``): Redis answers;
- L1, uncounted: an L1 hit when cache hits do not count against limits and quotas
  (``admission.count_cache_hits = false``): no admission at all.

For each: the serving process's CPU per request and the latency p50, and both as
ratios to the provider call. Then the semantic level's search alone (no embedding):
``VectorIndex.search`` over N random unit vectors of 256 dimensions, all of one group
(the same model and earlier messages: the worst case), p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gateway as gw  # its process helpers

from actors.cache import VectorIndex


async def _phase(
    http: aiohttp.ClientSession, url: str, pid: int, count: int, question: str | None,
    headers: dict[str, str],
) -> tuple[float, float]:  # fmt: skip
    """CPU ms per request of the serving process, and the latency p50 (ms)."""
    latencies = []
    cpu_before = gw._cpu_seconds(pid)
    for index in range(count):
        text = question if question is not None else f"question number {index} {time.time_ns()}"
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
        started = time.perf_counter()
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
        latencies.append((time.perf_counter() - started) * 1000)
    cpu_ms = (gw._cpu_seconds(pid) - cpu_before) * 1000 / count
    return cpu_ms, statistics.median(latencies)


async def _serve(extra: str, env: dict[str, str], port: int) -> tuple[object, str]:
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)  # noqa: SIM115
    config.write(gw._CONFIG + extra)
    config.close()
    server = gw._start(["serve", "--workers", "1", "--port", str(port), "--log-level", "error",
                        "--config", config.name], env)  # fmt: skip
    return server, config.name


# Each serve's config, and what is measured on it: (row, question, no-cache header).
SAME = "the same question"
SERVES = {
    "[cache]\n": [("provider call", SAME, True), ("miss", None, False), ("L1 hit", SAME, False)],
    "[cache]\nl1_max_entries = 0\n": [("L2 hit", SAME, False)],
    "[admission]\ncount_cache_hits = false\n": [("L1, uncounted", SAME, False)],
}


async def http_path(requests: int) -> None:
    sim_port = gw._free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {"PYTHONUNBUFFERED": "1"}
    simulator = gw._start(["simulate", "--port", str(sim_port), "--log-level", "error"], env)
    serve_env = env | {"OPENAI_API_KEY": "sk-bench",
                       "OPENAI_BASE_URL": f"http://127.0.0.1:{sim_port}/v1"}  # fmt: skip
    plain = {"Content-Type": "application/json", "Authorization": "Bearer k"}
    rows: dict[str, tuple[float, float]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for extra, phases in SERVES.items():
                port = gw._free_port()
                server, config = await _serve(extra, serve_env, port)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                pid = server.pid  # type: ignore[attr-defined]
                try:
                    await _phase(http, url, pid, 50, None, plain)  # warm up
                    await _phase(http, url, pid, 1, SAME, plain)  # SAME is cached
                    for row, question, no_cache in phases:
                        headers = plain | ({"X-Cache": "no-cache"} if no_cache else {})
                        rows[row] = await _phase(http, url, pid, requests, question, headers)
                finally:
                    server.terminate()  # type: ignore[attr-defined]
                    server.wait(15)  # type: ignore[attr-defined]
                    os.unlink(config)
    finally:
        simulator.terminate()
        simulator.wait()
        if "REDIS_URL" in env:  # else serve's embedded Redis, gone with it
            gw._forget(env["REDIS_URL"], f"bench{os.getpid()}")
    base_cpu, base_p50 = rows["provider call"]
    print(f"{'':>14} {'CPU/req':>8} {'ratio':>6} {'p50':>8} {'ratio':>6}")
    for name, (cpu, p50) in rows.items():
        print(f"{name:>14} {cpu:>6.2f}ms {cpu / base_cpu:>6.2f} "
              f"{p50:>6.2f}ms {p50 / base_p50:>6.2f}")  # fmt: skip


def semantic_search(sizes: list[int]) -> None:
    rng = np.random.default_rng(7)
    dims = 256
    print(f"\n{'vectors':>8} {'build':>7} {'search p50':>10} {'p99':>8}  (256 dims, k=16)")
    for size in sizes:
        vectors = rng.standard_normal((size, dims)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = VectorIndex(dims)
        started = time.perf_counter()

        asyncio.run(index.load(_kept(vectors), 0))  # type: ignore[arg-type]
        build = time.perf_counter() - started
        queries = vectors[rng.integers(0, size, 1_000)] + 0.05 * rng.standard_normal(
            (1_000, dims)).astype(np.float32)  # fmt: skip
        latencies = []
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        for query in queries:
            began = time.perf_counter()
            index.search(query, 16, 0, "c|gpt-4o")  # one group: the graph past 4,096
            latencies.append((time.perf_counter() - began) * 1000)
        q = statistics.quantiles(latencies, n=100)
        print(f"{size:>8} {build:>6.1f}s {q[49]:>8.3f}ms {q[98]:>6.3f}ms")


async def _kept(vectors: np.ndarray) -> AsyncIterator[tuple[str, _Kept]]:
    for i, vector in enumerate(vectors):
        yield f"e{i}", _Kept(vector)


class _Kept:
    """A stored vector as ``CacheStore.vectors_kept`` yields it."""

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = vector.astype("<f4").tobytes()
        self.context, self.scope, self.model, self.text = "c", "shared", "gpt-4o", "q"
        self.expires_ms = 1 << 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--vectors", default="10000,100000")
    args = parser.parse_args()
    asyncio.run(http_path(args.requests))
    semantic_search([int(n) for n in args.vectors.split(",")])


if __name__ == "__main__":
    main()
