"""What one large request costs the event loop of the process that carries it.

    python benchmarks/large_request.py [--messages 10000] [--repeat 3]

1. The Gemini request body for N messages: the SDK's own conversion (pydantic models,
   then its field-by-field dict conversion: what ``generate_content`` ran before)
   against the adapter's, per message.
2. The token estimate of N messages: each priced on its own, against classified in
   one go.
3. The whole path in one process (gateway, router, breaker; Redis at ``REDIS_URL`` or
   embedded; the simulator in a process of its own): a request of N messages to
   Gemini while a ticker measures the longest time the event loop did not run,
   beside the same for a one-message request.
Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from google.genai import models, types  # noqa: E402

from actors.node import Node  # noqa: E402
from actors.providers import (  # noqa: E402
    Catalog,
    ChatMessage,
    ProviderRequest,
    ProvidersConfig,
    Secret,
    estimate_tokens,
)
from actors.providers._config import ProviderConfig  # noqa: E402
from actors.providers._google import GoogleAdapter  # noqa: E402
from actors.providers._tokens import estimate_prompt_tokens  # noqa: E402
from actors.runtime._logging import configure_logging  # noqa: E402
from actors.runtime.config import (  # noqa: E402
    LIMIT_FIELDS,
    QUOTA_FIELDS,
    Config,
    GatewayConfig,
    LimitsConfig,
    QuotaConfig,
    RouterConfig,
)
from bus import BusConfig, EmbeddedRedis  # noqa: E402


def _conversation(count: int) -> list[ChatMessage]:
    roles = ("user", "assistant")
    return [ChatMessage(role=roles[i % 2], content=f"message {i}") for i in range(count)]


def _median_s(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _sdk_body(adapter: GoogleAdapter, request: ProviderRequest) -> dict[str, Any]:
    system, turns = request.split_system()
    contents = [
        types.Content(role="model" if m.role == "assistant" else "user",
                      parts=[types.Part(text=m.content)])
        for m in turns
    ]  # fmt: skip
    config = types.GenerateContentConfig(system_instruction=system)
    parameters = types._GenerateContentParameters(model="gemini", contents=contents, config=config)
    api = adapter.client._api_client
    body: dict[str, Any] = models._GenerateContentParameters_to_mldev(
        api, parameters, None, parameters
    )
    return body


async def _conversions(count: int, repeat: int) -> None:
    request = ProviderRequest(messages=_conversation(count))
    config = ProviderConfig(api_key=Secret("g"), base_url="http://127.0.0.1:9")
    adapter = GoogleAdapter(config, Catalog(), "gemini-1.5-flash")
    sdk = _median_s(lambda: _sdk_body(adapter, request), repeat)
    ours = _median_s(lambda: adapter._body(request), repeat)
    await adapter.close()
    print(f"Gemini body, {count} messages: SDK {sdk / count * 1e6:.1f} us/message, "
          f"adapter {ours / count * 1e6:.2f} us/message: {sdk / ours:.0f}x less")  # fmt: skip
    texts = [m.content for m in request.messages]
    one_by_one = _median_s(lambda: sum(estimate_tokens(t) + 4 for t in texts), repeat)
    at_once = _median_s(lambda: estimate_prompt_tokens(texts), repeat)
    print(f"token estimate, {count} messages: one by one {one_by_one * 1e3:.1f} ms, "
          f"in one go {at_once * 1e3:.1f} ms: {one_by_one / at_once:.0f}x less")  # fmt: skip


@contextlib.asynccontextmanager
async def _simulator() -> AsyncIterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "run.py", "simulate", "--port", str(port), "--log-level", "error",
         "--knob", "google.context_window=10000000"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        process.stdout.readline()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


async def _stall(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[float, float]:
    """(the event loop's longest stall, the request's time), in seconds."""
    loop = asyncio.get_running_loop()
    longest = 0.0

    async def tick() -> None:
        nonlocal longest
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            longest = max(longest, loop.time() - before - 0.001)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    async with http.post(url, json=body) as response:
        assert response.status == 200, await response.text()
        await response.read()
    took = time.perf_counter() - started
    ticker.cancel()
    return longest, took


async def _path(redis_url: str, count: int, repeat: int) -> None:
    async with _simulator() as simulator:
        google = ProviderConfig(api_key=Secret("g"), base_url=simulator, timeout_ms=120_000)
        config = Config(
            bus=BusConfig(namespace=f"bench{uuid.uuid4().hex[:6]}"),
            providers=ProvidersConfig(google=google),
            gateway=GatewayConfig(port=0),
            router=RouterConfig(max_messages=max(count, 10_000)),
            limits=LimitsConfig(**dict.fromkeys(LIMIT_FIELDS)),
            quota=QuotaConfig(**dict.fromkeys(QUOTA_FIELDS)),
        )
        node = Node(config, redis_url, "all")
        await node.start()
        assert node.gateway is not None
        url = f"{node.gateway.url}/ai-orchestration/generate"
        messages = [{"role": m.role, "content": m.content} for m in _conversation(count)]
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
                for label, body in (("1 message", {"prompt": "hi"}),
                                    (f"{count} messages", {"messages": messages})):  # fmt: skip
                    await _stall(http, url, body)  # warm up
                    runs = [await _stall(http, url, body) for _ in range(repeat)]
                    stall = statistics.median(r[0] for r in runs)
                    took = statistics.median(r[1] for r in runs)
                    print(f"whole path, {label}: longest event-loop stall {stall * 1e3:.1f} ms "
                          f"in a request of {took * 1e3:.0f} ms")  # fmt: skip
        finally:
            await node.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    configure_logging("error")
    await _conversions(args.messages, args.repeat)
    if os.environ.get("REDIS_URL"):
        await _path(os.environ["REDIS_URL"], args.messages, args.repeat)
    else:
        with EmbeddedRedis() as redis:
            await _path(redis.url, args.messages, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
