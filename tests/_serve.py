"""``run.py serve`` as a user starts it: a process of its own, against the simulator,
with a config file; read until it says it serves, stopped with SIGTERM at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from actors.providers.simulator import Simulator
from tests.conftest import PATIENCE

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    line: str  # "serving as ... on <url>; ..."
    output: list[str]  # what it printed, as it goes


def serve_env(simulator: Simulator, admin_token: str, **extra: str) -> dict[str, str]:
    """This environment without keys, base URLs or REDIS_URL (the embedded Redis), the
    providers pointed at the simulator."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.pop("REDIS_URL", None)
    return env | {"OPENAI_API_KEY": "sk-w", "OPENAI_BASE_URL": f"{simulator.url}/v1",
                  "AIO_ADMIN_TOKEN": admin_token, "PYTHONUNBUFFERED": "1"} | extra  # fmt: skip


@contextlib.asynccontextmanager
async def serving(
    config: Path, env: dict[str, str], *, workers: int = 1, log_level: str = "warning"
) -> AsyncIterator[Served]:
    """``run.py serve`` on a free loopback port until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--workers", str(workers), "--port", "0",
         "--config", str(config), "--log-level", log_level],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(PATIENCE):  # (then the process is stopped below)
            line = await asyncio.to_thread(process.stdout.readline)
            while line and not line.startswith("serving as"):
                output.append(line)
                line = await asyncio.to_thread(process.stdout.readline)
        assert line, f"serve stopped before it was ready: {''.join(output)}"
        stdout = process.stdout
        threading.Thread(target=lambda: output.extend(stdout), daemon=True).start()
        url = line.split(" on ")[1].split(";")[0].strip()
        yield Served(process, url, line, output)
    finally:
        if process.poll() is None:
            process.terminate()
            try:  # longer than serve's own wait for its workers (30 s, then SIGKILL)
                await asyncio.to_thread(process.wait, PATIENCE + 15)
            except subprocess.TimeoutExpired:
                process.kill()
