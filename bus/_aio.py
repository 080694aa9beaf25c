"""Small asyncio tools: jittered backoff, cancellation that cannot be lost, write batching."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any, Protocol

import redis.exceptions
import structlog

__all__ = ["Backoff", "WriteBatcher", "cancel_and_wait"]

log = structlog.get_logger("bus")


class Backoff:
    """Delays that double from ``base`` up to ``cap`` seconds, each drawn in [d/2, d]."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * 2**self.failures)
        self.failures = min(self.failures + 1, 32)
        return random.uniform(delay / 2, delay)

    async def sleep(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0


async def cancel_and_wait(task: asyncio.Task[Any], timeout: float | None = None) -> None:
    """Cancel ``task`` and wait until it is done, cancelling again if need be.

    On Python 3.11, ``asyncio.wait_for`` (which redis-py uses to send a command)
    swallows a cancel that arrives just as the send completes; a loop around a Redis
    call would then carry on. Cancelling until the task is done makes stop reliable.
    """
    loop = asyncio.get_running_loop()
    give_up = None if timeout is None else loop.time() + timeout
    while not task.done():
        task.cancel()
        wait = 0.05 if give_up is None else max(0.0, min(0.05, give_up - loop.time()))
        await asyncio.wait([task], timeout=wait)
        if give_up is not None and loop.time() >= give_up:
            return
    if not task.cancelled():
        task.exception()  # retrieved: the caller decides what a failure means


Command = Sequence[Any]


class Writes(Protocol):
    """Where a ``WriteBatcher`` sends: a ``Line`` (one server), a ``ClusterWriter``."""

    async def call(self, *args: Any) -> Any: ...

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]: ...

    async def close(self) -> None: ...


Batch = list[tuple[Sequence[Command], "asyncio.Future[list[Any]] | None"]]


class WriteBatcher:
    """Writes go out at once when the line is free, and together while it is busy.

    ``execute`` sends its commands at once, from the caller's task, when no write is
    in flight (no added latency, no extra task), taking along whatever was
    ``submit``-ted meanwhile; while a write is in flight, commands queue up and then
    go out together in one pipeline, so many handlers finishing together, or many
    callers asking together, share round trips. ``submit`` queues commands nobody
    waits for (events, acknowledgements): they ride on the next ``execute`` of this
    loop turn or go out on the next turn; they are sent even if the submitter is
    cancelled, and a failure is logged. A command's own error is returned in its
    place; a connection failure is raised to every waiting caller.
    """

    def __init__(self, line: Writes) -> None:
        self._line = line
        self._queue: Batch = []
        self._busy = False
        self._flush_scheduled = False
        self._sender: asyncio.Task[None] | None = None

    async def execute(self, *commands: Command) -> list[Any]:
        if self._busy:
            fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._queue.append((commands, fut))
            return await fut
        self._busy = True
        riders, self._queue = self._queue, []
        try:
            if not riders and len(commands) == 1:
                try:
                    return [await self._line.call(*commands[0])]
                except redis.exceptions.ResponseError as exc:
                    return [exc]
            if not riders:
                return await self._line.call_many(commands)
            batch: Batch = [*riders, (commands, None)]
            try:
                results = await self._line.call_many([c for cs, _f in batch for c in cs])
            except Exception as exc:
                self._fail(riders, exc)
                raise
            self._hand_out(riders, results)
            return results[len(results) - len(commands) :]
        finally:
            self._release()

    def submit(self, *commands: Command) -> None:
        self._queue.append((commands, None))
        self._schedule()

    def submit_watched(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """``submit``, with a future for the results (or the connection failure)."""
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((commands, fut))
        self._schedule()
        return fut

    def _schedule(self) -> None:
        if not self._busy and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._busy and self._queue:
            self._busy = True
            self._release()

    def _release(self) -> None:
        # Hand the line to a sender task if anything queued up meanwhile.
        if self._queue:
            self._sender = asyncio.get_running_loop().create_task(self._send_queued())
        else:
            self._busy = False

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._line.call_many([c for cs, _f in batch for c in cs])
                except Exception as exc:
                    self._fail(batch, exc)
                    continue
                self._hand_out(batch, results)
        finally:
            self._busy = False

    @staticmethod
    def _fail(batch: Batch, exc: Exception) -> None:
        unwatched = [fut for _c, fut in batch if fut is None]
        if unwatched:
            log.warning("bus.write_failed", commands=len(unwatched), error=repr(exc))
        for _commands, fut in batch:
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    @staticmethod
    def _hand_out(batch: Batch, results: list[Any]) -> None:
        start = 0
        for commands, fut in batch:
            end = start + len(commands)
            if fut is None:
                for result in results[start:end]:
                    if isinstance(result, Exception):
                        log.warning("bus.write_failed", error=repr(result))
            elif not fut.done():
                fut.set_result(results[start:end])
            start = end

    async def drain(self) -> None:
        """Wait until every command already queued has been sent."""
        while self._busy or self._queue:
            if self._sender is not None and not self._sender.done():
                await asyncio.wait([self._sender])
            else:
                await asyncio.sleep(0.001)

    async def close(self) -> None:
        await self._line.close()
