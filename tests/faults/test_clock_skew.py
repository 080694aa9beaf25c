"""Clock skew: a worker whose clock is 30 s ahead (its ``time.time``, through a
``sitecustomize`` on its path) decides every deadline, limit and quota as the others
would: deadlines, windows and periods are read off the Redis server's clock."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from actors.providers.simulator import Simulator
from actors.runtime.config import LIMIT_FIELDS
from tests.conftest import PATIENCE
from tests.request_path.conftest import ADMIN, MakeNode

ROOT = Path(__file__).resolve().parents[2]
SKEW_S = 30

_SITECUSTOMIZE = f"""
import time

_real_time, _real_time_ns = time.time, time.time_ns
time.time = lambda: _real_time() + {SKEW_S}
time.time_ns = lambda: _real_time_ns() + {SKEW_S} * 1_000_000_000
"""


async def test_a_worker_with_a_skewed_clock_decides_as_the_others(
    make_node: MakeNode, simulator: Simulator, server_url: str, tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:  # fmt: skip
    gateway = await make_node(providers=("openai",), role="gateway")
    assert gateway.gateway is not None
    skewed = tmp_path / "skewed"
    skewed.mkdir()
    (skewed / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    config = tmp_path / "worker.toml"
    unlimited = "".join(f'{name} = "unlimited"\n' for name in LIMIT_FIELDS
                        if name != "requests_per_minute")  # fmt: skip
    config.write_text(
        f'[bus]\nnamespace = "{gateway.config.bus.namespace}"\n'
        # A deadline shorter than the skew: a worker reading its own clock would find
        # every request expired.
        "[router]\nrequest_timeout_ms = 20000\n"
        f"[limits]\nrequests_per_minute = 5\n{unlimited}"
        "[quota]\ndaily_request_limit = 6\n"
        "[admission]\ntimeout_ms = 10000\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {
        "REDIS_URL": server_url, "PYTHONPATH": str(skewed), "PYTHONUNBUFFERED": "1",
        "OPENAI_API_KEY": "sk-o", "OPENAI_BASE_URL": f"{simulator.url}/v1",
    }  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--workers", "1", "--role", "worker",
         "--config", str(config), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), PATIENCE)
        assert "serving as worker" in line, line
        url = f"{gateway.gateway.url}/ai-orchestration/generate"
        statuses, kinds = [], []
        for n in range(7):
            async with http.post(url, json={"prompt": f"q{n}", "user_id": "skew",
                                            "timeout_ms": 20_000}) as response:  # fmt: skip
                body = await response.json()
                statuses.append(response.status)
                kinds.append(body.get("error", {}).get("type", ""))
        # Five in the minute's window; the sixth refused by the window; the seventh too.
        assert statuses == [200] * 5 + [429, 429], (statuses, kinds)
        assert kinds[5:] == ["rate_limited", "rate_limited"]
        quotas = f"{gateway.gateway.url}/ai-orchestration/quotas/skew"
        async with http.get(quotas, headers=ADMIN) as response:
            rows = {r["quota_type"]: r for r in (await response.json())["quotas"]}
        assert rows["daily_requests"]["used"] == 5  # today, on Redis's clock
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(worker.wait, 30)
        except subprocess.TimeoutExpired:
            worker.kill()
