"""CPU per call of each adapter against the simulator, beside a bare aiohttp POST.

    python benchmarks/providers.py [--calls 2000] [--inflight 64] [--seconds 3]

The simulator runs in its own process (no latency), so this process's CPU time is
the adapter's (SDK, transport, our translation) or, for the floor, a bare aiohttp
POST of the same JSON body with the same headers, its response read and decoded.
Runs are interleaved; the medians of three are reported.
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
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from actors.providers import Catalog, ProviderRequest, adapter_class  # noqa: E402
from actors.providers._config import AzureConfig, ProviderConfig, Secret  # noqa: E402

PROMPT = "Explain in two sentences why a circuit breaker helps an LLM gateway."
MODELS = {
    "openai": "gpt-4o",
    "azure": "gpt-4o",
    "anthropic": "claude-3-haiku",
    "google": "gemini-1.5-flash",
}


def _bare(base: str, name: str) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body of the same call, as the SDK sends it."""
    messages = [{"role": "user", "content": PROMPT}]
    if name == "openai":
        body: dict[str, Any] = {"model": "gpt-4o", "messages": messages}
        return (
            f"{base}/v1/chat/completions",
            {"Authorization": "Bearer k"},
            json.dumps(body).encode(),
        )
    if name == "azure":
        url = f"{base}/openai/deployments/dep/chat/completions?api-version=2024-10-21"
        return url, {"api-key": "k"}, json.dumps({"messages": messages}).encode()
    if name == "anthropic":
        body = {"model": "claude-3-haiku-20240307", "max_tokens": 4096, "messages": messages}
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        return f"{base}/v1/messages", headers, json.dumps(body).encode()
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    url = f"{base}/v1beta/models/gemini-1.5-flash:generateContent"
    return url, {"x-goog-api-key": "k"}, json.dumps(body).encode()


async def _measure(
    call: Callable[[], Awaitable[Any]], calls: int, inflight: int, seconds: float
) -> dict[str, float]:
    for _ in range(50):
        await call()
    cpu0, latencies = time.process_time(), []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1e6)
    cpu_seq = (time.process_time() - cpu0) / calls * 1e6
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            done += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    wall = time.perf_counter() - wall0
    return {
        "cpu_us": cpu_seq,
        "p50_us": statistics.median(latencies),
        "rps": done / wall,
        "cpu_us_loaded": (time.process_time() - cpu0) / done * 1e6,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    simulator = subprocess.Popen(
        [sys.executable, "run.py", "simulate", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert simulator.stdout is not None
        simulator.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        await _run(base, args)
    finally:
        simulator.terminate()
        simulator.wait()


async def _run(base: str, args: argparse.Namespace) -> None:
    catalog = Catalog()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        print(f"{'provider':10} {'CPU/call':>16} {'p50':>9} {args.inflight} in flight")
        for name in ("openai", "azure", "anthropic", "google"):
            fields: dict[str, Any] = {"api_key": Secret("k"), "timeout_ms": 30_000}
            if name == "azure":
                config: ProviderConfig = AzureConfig(base_url=base, deployment="dep", **fields)
            else:
                config = ProviderConfig(
                    base_url=base + "/v1" if name == "openai" else base, **fields
                )
            adapter = adapter_class(name)(config, catalog, MODELS[name])  # type: ignore[arg-type]
            request = ProviderRequest(prompt=PROMPT)
            url, headers, body = _bare(base, name)
            headers = {**headers, "Content-Type": "application/json"}

            async def bare(
                url: str = url, headers: dict[str, str] = headers, body: bytes = body
            ) -> Any:
                async with http.post(url, data=body, headers=headers) as response:
                    return json.loads(await response.read())

            async def sdk(adapter: Any = adapter, request: ProviderRequest = request) -> Any:
                return await adapter.generate(request)

            runs: dict[str, list[dict[str, float]]] = {"sdk": [], "bare": []}
            for _ in range(args.repeat):
                runs["bare"].append(await _measure(bare, args.calls, args.inflight, args.seconds))
                runs["sdk"].append(await _measure(sdk, args.calls, args.inflight, args.seconds))
            await adapter.close()
            med = {
                k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()
            }
            s, b = med["sdk"], med["bare"]
            print(
                f"{name:10} {s['cpu_us']:6.0f} us ({s['cpu_us'] / b['cpu_us']:.1f}x) "
                f"{s['p50_us']:6.0f} us  {s['rps']:6.0f}/s at {s['cpu_us_loaded']:4.0f} us CPU "
                f"({s['cpu_us_loaded'] / b['cpu_us_loaded']:.1f}x)   bare: {b['cpu_us']:4.0f} us, "
                f"{b['p50_us']:4.0f} us, {b['rps']:6.0f}/s at {b['cpu_us_loaded']:4.0f} us",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
