"""One large request must not stall the others, run twice, or be taken at any size."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from actors.client import Client, GenerateRequest, InvalidRequest
from actors.node import Node
from actors.providers import ChatMessage
from actors.providers.simulator import Simulator
from actors.runtime.config import LIMIT_FIELDS, QUOTA_FIELDS, RouterConfig
from tests.conftest import FAST
from tests.request_path.conftest import MakeNode

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def workers(
    make_node: MakeNode, simulator: Simulator, server_url: str, tmp_path: Path
) -> AsyncIterator[Node]:
    """A gateway here and two worker processes (Gemini and Anthropic on the simulator)
    that take requests of up to 200,000 messages; yields the gateway once both serve."""
    gateway = await make_node(providers=("anthropic", "google"), role="gateway",
                              router=RouterConfig(max_messages=200_000))  # fmt: skip
    config = tmp_path / "worker.toml"
    config.write_text(
        f'[bus]\nnamespace = "{gateway.config.bus.namespace}"\n'
        + "".join(f"{name} = {getattr(FAST, name)}\n"
                  for name in ("block_ms", "claim_idle_ms", "claim_interval_ms"))
        + "[router]\nmax_messages = 200000\n"
        + "[health]\nenabled = false\n"  # no probe among the calls counted
        + "[limits]\n" + "".join(f'{name} = "unlimited"\n' for name in LIMIT_FIELDS)
        + "[quota]\n" + "".join(f'{name} = "unlimited"\n' for name in QUOTA_FIELDS)
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {"REDIS_URL": server_url, "PYTHONUNBUFFERED": "1",
            "GOOGLE_API_KEY": "g", "GOOGLE_BASE_URL": simulator.url,
            "GOOGLE_TIMEOUT_MS": "120000", "GOOGLE_MAX_RETRIES": "0",
            "ANTHROPIC_API_KEY": "sk-a", "ANTHROPIC_BASE_URL": simulator.url}  # fmt: skip
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "run.py",
                "serve",
                "--workers",
                "1",
                "--role",
                "worker",
                "--config",
                str(config),
                "--log-level",
                "error",
            ],
            cwd=ROOT,
            env=env | {"HOSTNAME": name},
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("w1", "w2")
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.to_thread(process.stdout.readline)
            assert "serving as worker" in line, line
        yield gateway
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()


async def test_a_large_request_does_not_stall_a_small_one_nor_run_twice(
    workers: Node, simulator: Simulator
) -> None:
    """100,000 short messages to Gemini (its adapter used to spend a minute of event-loop
    time converting them: the other worker then took the call over and Gemini was
    called twice), and a one-line request to Anthropic sent while it is on its way."""
    assert workers.gateway is not None
    url = f"{workers.gateway.url}/ai-orchestration/generate"
    simulator.state.update("google", {"latency_ms": 3_000, "context_window": 2_000_000})
    turns = ("user", "assistant")
    messages = [{"role": turns[i % 2], "content": str(i)} for i in range(100_000)]
    large = {"model": "gemini-1.5-flash", "timeout_ms": 300_000, "messages": messages}
    small = {"prompt": "Hi", "model": "claude-3-haiku"}
    order: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:

        async def send(name: str, body: Any) -> tuple[int, Any]:
            async with http.post(url, json=body) as response:
                answer = response.status, await response.json()
            order.append(name)
            return answer

        large_task = asyncio.create_task(send("large", large))
        small_answer = await send("small", small)
        status, body = await large_task
    assert status == 200, body
    assert small_answer[0] == 200, small_answer
    assert order == ["small", "large"]
    assert body["response"]["provider"] == "google"
    assert simulator.state.calls["google"] == 1  # called once: never taken over


async def test_a_request_over_the_bounds_is_refused_and_says_which(make_node: MakeNode) -> None:
    node = await make_node(
        providers=("openai",),
        router=RouterConfig(max_messages=100, max_prompt_chars=1_000),
    )
    client = Client(node.bus)
    many = [ChatMessage(role="user", content="hi")] * 101
    with pytest.raises(InvalidRequest) as caught:
        await client.generate(GenerateRequest(messages=many))
    assert caught.value.status == 400
    assert caught.value.failed.message == (
        "messages: 101 messages; at most 100 are taken (router.max_messages)"
    )
    with pytest.raises(InvalidRequest) as caught:
        await client.generate(GenerateRequest(prompt="x" * 1_001))
    assert "1001 characters of prompt; at most 1000" in caught.value.failed.message
    assert (await client.generate(GenerateRequest(prompt="x" * 1_000))).content


async def test_the_gateway_refuses_a_request_over_the_bounds_before_the_bus(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), router=RouterConfig(max_messages=100))
    assert node.gateway is not None
    many = [{"role": "user", "content": "hi"}] * 101
    for path, body in [
        ("/ai-orchestration/generate", {"messages": many}),
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": many}),
    ]:
        async with http.post(f"{node.gateway.url}{path}", json=body) as response:
            assert response.status == 400
            error = (await response.json())["error"]
            assert "at most 100 are taken (router.max_messages)" in error["message"]
    assert await node.bus.redis.xlen(node.bus.names.requests) == 0  # nothing was published
