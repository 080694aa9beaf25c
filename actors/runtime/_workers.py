"""Several processes of one program on one port: forked workers under a supervising parent.

Forked, not spawned: the parent has imported everything (about a second) and the
children start from its memory at once (copy on write; ``gc.freeze()`` before the
fork keeps the collector from touching, and so copying, what the parent built). The
parent runs no event loop, opens no Redis connection and serves nothing: it starts
children, reads their "ready", restarts one that dies and stops them all on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import math
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from bus import Backoff, die_with_parent

__all__ = ["Workers", "reserve_port"]

log = structlog.get_logger("workers")

# A worker that dies within this many seconds of its start counts as "keeps dying":
# its restarts back off (doubling to _BACKOFF_MAX) instead of looping hot.
_STABLE_S = 30.0
_BACKOFF_MAX = 10.0
_SAID_MAX = 512  # below PIPE_BUF: one write, read whole


@dataclass
class _Child:
    index: int
    pid: int
    ready_fd: int
    started: float
    ready: bool = False
    said: str = ""  # what it passed to ready()


@dataclass
class Workers:
    """Runs ``child(index, ready)`` in ``count`` forked processes.

    ``child`` returns the process's exit code; it calls ``ready(said)`` once it serves,
    with a line about itself. ``on_ready([(pid, said), ...])`` runs in the parent once
    every first child is ready. The first child is started alone, the others once it
    is ready (in parallel): a start that cannot succeed fails once. Until all have
    been ready once, a child that exits with a non-zero code before it was ready (a
    config error, Redis not reachable) stops them all with that code: restarting
    would fail again. Afterwards a child that dies is restarted, after a backoff
    when it keeps dying (a restart that cannot reach Redis included). SIGTERM
    or SIGINT to the parent reaches every child as SIGTERM; the parent returns when
    all have exited (after ``stop_timeout`` seconds, SIGKILL).
    """

    count: int
    child: Callable[[int, Callable[[str], None]], int]
    on_ready: Callable[[list[tuple[int, str]]], None] = lambda ready: None
    stop_timeout: float = 30.0
    _children: dict[int, _Child] = field(default_factory=dict)  # by pid
    _selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    _exit: int | None = None  # once stopping: the exit code
    _stop_deadline: float = 0.0  # then SIGKILL
    _announced: bool = False
    _spread: bool = False  # the first ready: the others started

    def run(self) -> int:
        """Start the children and supervise them until told to stop; the exit code."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        # The wake-up pipe first, then the handlers: a signal between them is not lost.
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in _SIGNALS}
        self._wake = (wake_r, wake_w)
        gc.collect()  # start's garbage is not frozen for good
        gc.freeze()  # what exists now is shared with the children, untouched
        backoff = Backoff(0.5, _BACKOFF_MAX)
        due: dict[int, float] = {}  # index -> when to start it again
        try:
            self._spawn(0)  # the rest once it is ready: a start that fails, fails once
            while self._children or (due and self._exit is None):
                wake_at = [*due.values()] if self._exit is None else [self._stop_deadline]
                soonest = min(wake_at, default=math.inf)
                timeout = None if soonest == math.inf else max(0.0, soonest - time.monotonic())
                for key, _ in self._selector.select(timeout):
                    if key.data is None:
                        self._signals(wake_r)
                    else:
                        self._read_ready(key.data)
                for child, status in self._reap():
                    code = os.waitstatus_to_exitcode(status)
                    if self._exit is not None:
                        continue
                    if not child.ready and code > 0 and not self._announced:
                        log.error("workers.child_failed_to_start", pid=child.pid, exit=code)
                        self._stop(code)
                        continue
                    quick = time.monotonic() - child.started < _STABLE_S
                    delay = backoff.next_delay() if quick else 0.0
                    if not quick:
                        backoff.reset()
                    log.warning("workers.child_died", worker=child.index, pid=child.pid,
                                exit=code, restart_in_s=round(delay, 2))  # fmt: skip
                    due[child.index] = time.monotonic() + delay
                now = time.monotonic()
                for index in [i for i, at in due.items() if at <= now and self._exit is None]:
                    del due[index]
                    self._spawn(index)
            return self._exit or 0
        finally:
            self._kill_all()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._selector.close()
            os.close(wake_r)
            os.close(wake_w)

    def _spawn(self, index: int) -> None:
        ready_r, ready_w = os.pipe()
        parent = os.getpid()
        # No signal is handled between the fork and the child's own handlers (the
        # parent's would run in the child, and write to the parent's wake-up pipe).
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; coverage sees it only as a child
            os._exit(self._in_child(index, parent, ready_r, ready_w))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        os.close(ready_w)
        child = _Child(index, pid, ready_r, time.monotonic())
        self._children[pid] = child
        self._selector.register(ready_r, selectors.EVENT_READ, child)

    def _in_child(self, index: int, parent: int, ready_r: int, ready_w: int) -> int:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)  # blocked for the fork
            # A SIGKILLed parent leaves no worker behind. SIGKILL, not SIGTERM: a worker
            # whose parent is gone has no one to restart or stop it, and a graceful stop
            # that hung would leave it holding the port for good (seen once in a test).
            die_with_parent(parent, signal.SIGKILL)
            os.close(ready_r)
            self._selector.close()
            for fd in (
                *self._wake,
                *(c.ready_fd for c in self._children.values() if c.ready_fd >= 0),
            ):
                os.close(fd)

            def ready(said: str) -> None:
                os.write(ready_w, said.encode()[:_SAID_MAX] or b" ")

            code = self.child(index, ready)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            log.exception("workers.child_crashed", worker=index)
        finally:
            _flush_output()
        return code

    def _read_ready(self, child: _Child) -> None:
        try:
            data = os.read(child.ready_fd, _SAID_MAX)
        except OSError:
            data = b""
        if not data:  # the child exited (or closed its end)
            self._selector.unregister(child.ready_fd)
            os.close(child.ready_fd)
            child.ready_fd = -1
            return
        child.ready = True
        child.said = data.decode(errors="replace").strip()
        if not self._spread and self._exit is None:
            self._spread = True
            for index in range(1, self.count):
                self._spawn(index)
        everyone = self._children.values()
        if not self._announced and len(everyone) == self.count and all(c.ready for c in everyone):
            self._announced = True
            self.on_ready(sorted((c.pid, c.said) for c in everyone))

    def _signals(self, wake_r: int) -> None:
        try:
            got = os.read(wake_r, 512)
        except BlockingIOError:
            return
        if any(number in (signal.SIGTERM, signal.SIGINT) for number in got):
            self._stop(0)

    def _stop(self, code: int) -> None:
        if self._exit is not None:
            return
        self._exit = code
        self._stop_deadline = time.monotonic() + self.stop_timeout
        for pid in self._children:
            _signal(pid, signal.SIGTERM)

    def _reap(self) -> list[tuple[_Child, int]]:
        done = []
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self._children.pop(pid, None)
            if child is None:  # not a worker: the embedded Redis is a child too
                log.error("workers.other_child_exited", pid=pid,
                          exit=os.waitstatus_to_exitcode(status))  # fmt: skip
                continue
            if child.ready_fd >= 0:
                self._selector.unregister(child.ready_fd)
                os.close(child.ready_fd)
            done.append((child, status))
        if self._exit is not None and self._children and time.monotonic() > self._stop_deadline:
            for pid in self._children:
                _signal(pid, signal.SIGKILL)
            self._stop_deadline = math.inf  # then wait for them (SIGCHLD wakes the loop)
        return done

    def _kill_all(self) -> None:
        """On the way out (an error in the parent included): no child outlives it."""
        for pid in list(self._children):
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self._children.clear()


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _flush_output() -> None:
    """Flush what the child printed: ``os._exit`` skips the interpreter's own flush."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, held by the parent for the
    run so that its workers, and only processes of this user, may bind the port too.
    Port 0 picks a free port. Raises ``OSError`` when anything else holds the port,
    including another program that asked for ``SO_REUSEPORT`` (checked by a bind
    without it first)."""
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # nothing else holds it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        probe.bind(address)
        port = probe.getsockname()[1]
    held = socket.socket(family, socket.SOCK_STREAM)
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((address[0], port, *address[2:]))
    except OSError:
        held.close()
        raise OSError(errno.EADDRINUSE, f"port {port} was taken while starting") from None
    return held, port
