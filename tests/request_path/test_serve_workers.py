"""``run.py serve --workers N``: N forked processes on one port and one Redis, under a
parent that restarts a dead one and stops them all; through the real OpenAI SDK."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from actors.providers.simulator import Simulator
from actors.runtime.config import LIMIT_FIELDS, QUOTA_FIELDS
from tests._serve import ROOT, Served, serve_env, serving
from tests.conftest import PATIENCE, eventually


class Workers(Served):
    """A served parent with its workers."""

    def children(self) -> list[int]:
        """The parent's children but the embedded Redis: its workers."""
        return [pid for pid in _children(self.process.pid) if _comm(pid) != "redis-server"]

    def redis(self) -> list[int]:
        return [pid for pid in _children(self.process.pid) if _comm(pid) == "redis-server"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(child) for child in text.split()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
async def served(simulator: Simulator, tmp_path: Path) -> AsyncIterator[Workers]:
    config = tmp_path / "aio.toml"
    unlimited = "".join(f'{name} = "unlimited"\n' for name in LIMIT_FIELDS)
    no_quota = "".join(f'{name} = "unlimited"\n' for name in QUOTA_FIELDS)
    config.write_text(f'[bus]\nnamespace = "sw{uuid.uuid4().hex[:8]}"\n[health]\nenabled = false\n'
                      f"[limits]\n{unlimited}[quota]\n{no_quota}")  # fmt: skip
    async with serving(config, serve_env(simulator, "adm-workers"), workers=2) as served:
        yield Workers(served.process, served.url, served.line, served.output)


def _sdk(served: Workers) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="k", base_url=f"{served.url}/v1", max_retries=0)


async def _ask(client: openai.AsyncOpenAI, n: int) -> str:
    answer = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {n}"}]
    )
    return answer.choices[0].message.content or ""


def _connections_to(pid: int, port: int) -> int:
    """Established connections whose local port is ``port``, held by process ``pid``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:  # ESTABLISHED
                held += 1
    return held


async def test_workers_share_the_port_and_answer_through_the_sdk(served: Workers) -> None:
    workers = served.children()
    assert len(workers) == 2, served.line
    assert re.search(r"; 2 workers: \S+ \(pid \d+\), \S+ \(pid \d+\); providers: openai",
                     served.line), served.line  # fmt: skip
    assert sorted(int(p) for p in re.findall(r"pid (\d+)", served.line)) == sorted(workers)
    # 32 clients, each its own kept-alive connection: the kernel spreads them over both.
    clients = [_sdk(served) for _ in range(32)]
    try:
        answers = await asyncio.gather(*(_ask(c, n) for n, c in enumerate(clients)))
        assert all(answers)
        port = int(served.url.rsplit(":", 1)[1])
        held = {pid: _connections_to(pid, port) for pid in workers}
        assert sum(held.values()) == 32 and all(held.values()), held
    finally:
        for client in clients:
            await client.close()


async def test_a_killed_worker_is_replaced_and_the_rest_keep_answering(served: Workers) -> None:
    first, second = served.children()
    os.kill(first, signal.SIGKILL)
    async with _sdk(served) as client:
        assert await _ask(client, 1)  # the other one answers meanwhile
        replaced = await eventually(lambda: len(c := served.children()) == 2 and first not in c)
        assert replaced
        assert second in served.children()
        assert "workers.child_died" in "".join(served.output)
        # The new one serves too: new connections until one lands on it.
        new = next(pid for pid in served.children() if pid != second)
        port = int(served.url.rsplit(":", 1)[1])

        async def lands_on_new() -> bool:
            async with _sdk(served) as fresh:
                assert await _ask(fresh, 2)
                return _connections_to(new, port) > 0

        assert await eventually(lands_on_new)


async def test_sigterm_stops_every_worker_and_the_embedded_redis(served: Workers) -> None:
    workers, redis = served.children(), served.redis()
    assert len(workers) == 2 and len(redis) == 1
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, PATIENCE) == 0
    assert not any(_alive(pid) for pid in workers + redis)


async def test_a_killed_parent_takes_its_workers_with_it(served: Workers) -> None:
    workers = served.children()
    served.process.kill()
    await asyncio.to_thread(served.process.wait, PATIENCE)
    assert await eventually(lambda: not any(_alive(pid) for pid in workers))


def test_a_port_in_use_is_refused_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "run.py", "serve", "--workers", "2", "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=PATIENCE,
            env={k: v for k, v in os.environ.items() if k != "AIO_ADMIN_TOKEN"},
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_must_be_at_least_one() -> None:
    result = subprocess.run([sys.executable, "run.py", "serve", "--workers", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=PATIENCE)  # fmt: skip
    assert result.returncode == 2
    assert "--workers: must be at least 1" in result.stderr
