"""The simulator itself: its control endpoint, determinism, and the APIs' edges."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import openai
import pytest

from actors.providers.simulator import Simulator
from tests.conftest import PATIENCE, ctrl_c_as_in_a_terminal
from tests.providers.conftest import KEYS

ROOT = Path(__file__).resolve().parents[2]


async def test_knobs_change_at_run_time(simulator: Simulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{simulator.url}/_sim/knobs/openai", json={"latency_ms": 5}) as r:
            assert r.status == 200
            assert (await r.json())["latency_ms"] == 5
        async with http.get(f"{simulator.url}/_sim/knobs") as r:
            knobs = await r.json()
        assert knobs["openai"]["latency_ms"] == 5
        assert knobs["anthropic"]["latency_ms"] == 0
        async with http.post(f"{simulator.url}/_sim/knobs/openai", json={"error_rate": 3}) as r:
            assert r.status == 400
            assert "error_rate" in (await r.json())["error"]["message"]
        async with http.post(f"{simulator.url}/_sim/knobs/nobody", json={}) as r:
            assert r.status == 400
        async with http.post(f"{simulator.url}/_sim/reset") as r:
            assert (await r.json())["openai"]["latency_ms"] == 0


async def test_answers_are_deterministic_and_latency_applies(simulator: Simulator) -> None:
    client = openai.AsyncOpenAI(api_key="k", base_url=f"{simulator.url}/v1", max_retries=0)
    messages = [{"role": "user", "content": "same prompt"}]
    first = await client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    second = await client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert first.choices[0].message.content == second.choices[0].message.content
    simulator.state.update("openai", {"latency_ms": 200})
    started = asyncio.get_running_loop().time()
    await client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert asyncio.get_running_loop().time() - started >= 0.2
    await client.close()


async def test_embeddings_through_the_sdk(simulator: Simulator) -> None:
    client = openai.AsyncOpenAI(api_key="k", base_url=f"{simulator.url}/v1", max_retries=0)
    result = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    # 1536 dimensions, as OpenAI's model has (the SDK asked for base64)
    assert [len(d.embedding) for d in result.data] == [1536, 1536]
    assert result.data[0].embedding != result.data[1].embedding
    again = await client.embeddings.create(model="text-embedding-3-small", input="a")
    assert again.data[0].embedding == result.data[0].embedding
    assert result.usage.prompt_tokens > 0
    await client.close()


async def test_azure_needs_an_api_version(simulator: Simulator) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{simulator.url}/openai/deployments/d/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}]}
        async with http.post(url, json=body, headers={"api-key": "k"}) as r:
            assert r.status == 404
        async with http.post(
            url + "?api-version=2024-10-21", json=body, headers={"api-key": "k"}
        ) as r:
            assert r.status == 200


async def test_requests_without_credentials_are_refused(simulator: Simulator) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/chat/completions", "/v1/messages", "/v1beta/models/m:generateContent"):
            async with http.post(simulator.url + path, json=body) as r:
                assert r.status == 401, path


async def test_simulate_command_serves_until_stopped(unused_tcp_port: int) -> None:
    with ctrl_c_as_in_a_terminal():
        process = subprocess.Popen(
            [sys.executable, "run.py", "simulate", "--port", str(unused_tcp_port),
             "--latency-ms", "1", "--knob", "openai.error_rate=1"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert f"127.0.0.1:{unused_tcp_port}" in line
        base = f"http://127.0.0.1:{unused_tcp_port}"
        async with aiohttp.ClientSession() as http, http.get(f"{base}/_sim/knobs") as r:
            knobs = await r.json()
        assert knobs["openai"]["error_rate"] == 1 and knobs["google"]["latency_ms"] == 1
        client = openai.AsyncOpenAI(api_key=KEYS["openai"], base_url=f"{base}/v1", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
        await client.close()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(PATIENCE) in (0, 130)


def test_simulate_refuses_a_bad_knob() -> None:
    result = subprocess.run(
        [sys.executable, "run.py", "simulate", "--knob", "openai.error_rate=7"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "error_rate" in result.stderr


async def test_probe_command_against_the_simulator(simulator: Simulator) -> None:
    url = simulator.url
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {
        "OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": f"{url}/v1",
        "AZURE_OPENAI_API_KEY": "az", "AZURE_OPENAI_ENDPOINT": url,
        "ANTHROPIC_API_KEY": "an", "ANTHROPIC_BASE_URL": url,
        "GOOGLE_API_KEY": "g", "GOOGLE_BASE_URL": url,
    }  # fmt: skip
    simulator.state.update("google", {"error_rate": 1})
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "run.py", "probe"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    for healthy in ("openai", "azure", "anthropic"):
        assert " healthy " in lines[healthy], result.stdout
    assert " down " in lines["google"] and "server_error" in lines["google"]
    assert result.returncode == 2  # one down
