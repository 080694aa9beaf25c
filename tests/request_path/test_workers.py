"""Several processes on one Redis: workers share the load and cover for a killed one."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from actors.client import Client, GenerateRequest
from actors.limits._keys import limits_key
from actors.messages import GenerateResponse
from actors.node import Node
from actors.providers.simulator import Simulator
from actors.runtime.config import LIMIT_FIELDS, QUOTA_FIELDS
from tests.conftest import FAST, PATIENCE, eventually
from tests.request_path.conftest import PATIENT_ADMISSION, MakeNode

ROOT = Path(__file__).resolve().parents[2]

SpawnWorker = Callable[[str], subprocess.Popen[str]]


@pytest.fixture
async def gateway(make_node: MakeNode) -> Node:
    return await make_node(providers=("openai",), role="gateway")


@pytest.fixture
async def spawn_worker(
    gateway: Node, simulator: Simulator, server_url: str, tmp_path: Path
) -> AsyncIterator[SpawnWorker]:
    config = tmp_path / "worker.toml"
    bus = gateway.config.bus
    config.write_text(
        f'[bus]\nnamespace = "{bus.namespace}"\n'
        + "".join(
            f"{name} = {getattr(FAST, name)}\n"
            for name in ("block_ms", "claim_idle_ms", "claim_interval_ms", "node_lease_ms")
        )
        + "[limits]\n"
        + "".join(f'{name} = "unlimited"\n' for name in LIMIT_FIELDS)
        + "[quota]\n"
        + "".join(f'{name} = "unlimited"\n' for name in QUOTA_FIELDS)
        + f"[admission]\ntimeout_ms = {PATIENT_ADMISSION.timeout_ms}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {
        "REDIS_URL": server_url,
        "OPENAI_API_KEY": "sk-o",
        "OPENAI_BASE_URL": f"{simulator.url}/v1",
        "OPENAI_DEFAULT_MODEL": "gpt-4o",
        "OPENAI_TIMEOUT_MS": "10000",
        "PYTHONUNBUFFERED": "1",
    }
    workers: list[subprocess.Popen[str]] = []

    def spawn(name: str) -> subprocess.Popen[str]:
        worker = subprocess.Popen(
            [sys.executable, "run.py", "serve", "--workers", "1", "--role", "worker",
             "--config", str(config), "--log-level", "warning"],
            cwd=ROOT, env=env | {"HOSTNAME": name}, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        workers.append(worker)
        return worker

    yield spawn
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


async def _ready(worker: subprocess.Popen[str]) -> str:
    """The worker's node name, once it serves."""
    assert worker.stdout is not None
    line = await asyncio.to_thread(worker.stdout.readline)
    assert "serving as worker" in line, line
    return line.split("node ")[1].split(";")[0]


async def test_two_workers_share_the_load(
    gateway: Node, spawn_worker: SpawnWorker, simulator: Simulator
) -> None:
    names = {await _ready(spawn_worker("w1")), await _ready(spawn_worker("w2"))}
    simulator.state.update("openai", {"latency_ms": 20})
    client = Client(gateway.bus)
    handled: collections.Counter[str] = collections.Counter()

    async def user(n: int) -> None:  # a steady flow, as users make it
        for k in range(8):
            answer = await client.generate(GenerateRequest(prompt=f"q{n}.{k}"))
            handled[answer.handled_by] += 1

    await asyncio.gather(*(user(n) for n in range(8)))
    assert set(handled) == names
    assert min(handled.values()) >= 10, handled


async def test_a_killed_worker_does_not_lose_its_request(
    gateway: Node, spawn_worker: SpawnWorker, simulator: Simulator
) -> None:
    workers = {}
    for name in ("w1", "w2"):
        worker = spawn_worker(name)
        workers[await _ready(worker)] = worker
    # Long enough to find who holds the request and kill it before it is answered.
    simulator.state.update("openai", {"latency_ms": 3_000})
    client = Client(gateway.bus)
    request = GenerateRequest(prompt="survive", timeout_ms=int(PATIENCE * 1000))
    ask = asyncio.create_task(client.generate(request))
    requests = gateway.bus.names.requests

    async def holder() -> str | None:
        pending = await gateway.bus.redis.xpending_range(requests, "router", "-", "+", 10)
        return pending[0]["consumer"].decode() if pending else None

    victim = await eventually(holder)
    workers[victim].send_signal(signal.SIGKILL)
    answer = await ask
    assert isinstance(answer, GenerateResponse) and answer.content
    (survivor,) = set(workers) - {victim}
    assert answer.handled_by == survivor
    # Both workers admitted it (the victim before it died): it counts once.
    limits = await gateway.limits.status("anonymous")
    assert limits == []  # unlimited here, but counted all the same:
    admitted = await gateway.bus.redis.zcard(limits_key(gateway.bus.names, "anonymous", "requests"))
    assert admitted == 1
    usage = await gateway.quotas.get_usage("anonymous")
    assert next(r["used"] for r in usage["quotas"] if r["quota_type"] == "daily_requests") == 1
