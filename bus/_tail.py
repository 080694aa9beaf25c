"""Tails: every process reads every new entry of a stream (no group), for views."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from ._aio import cancel_and_wait
from ._codec import Message
from ._errors import REDIS_DOWN, DecodeError
from ._line import parse_entries

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["Tail", "TailHandler", "follow"]

log = structlog.get_logger("bus")

TailHandler = Callable[[Message], None]


class Tail:
    """Hands each new entry of ``stream`` to ``handler``, in order, in this process.

    Unlike a subscription nothing is acknowledged and every process sees every
    entry: the way to keep an in-process view (latencies, breaker states) fresh.
    Entries that do not decode are skipped; a handler that raises is logged.
    """

    def __init__(self, bus: Bus, stream: str, handler: TailHandler) -> None:
        self._bus = bus
        self.stream = stream
        self._handler = handler
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start from the stream's current end; returns once reading."""
        last: Any = await self._bus.redis.xrevrange(self.stream, count=1)
        start_id: bytes = last[0][0] if last else b"0-0"
        self._task = asyncio.create_task(self._read(start_id), name=f"tail {self.stream}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _read(self, last_id: bytes) -> None:
        await follow(self._bus, self.stream, last_id, 512, self._hand)

    def _hand(self, _entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            message = self._bus.codec.decode(fields).message
        except DecodeError:
            return  # not ours to judge: subscribers dead-letter it
        try:
            self._handler(message)
        except Exception:
            log.exception("bus.tail_handler_failed", stream=self.stream)


async def follow(
    bus: Bus,
    stream: str,
    last_id: bytes,
    count: int,
    handle: Callable[[bytes, dict[bytes, bytes]], None],
) -> None:
    """Read ``stream`` after ``last_id`` forever (until cancelled), entry by entry.

    On a connection of its own; while Redis is unreachable it backs off and says so.
    """
    backoff = bus._backoff()
    line = bus.reader(stream)
    block = bus.config.block_ms
    try:
        while True:
            try:
                response = await line.call(
                    "XREAD", "COUNT", count, "BLOCK", block, "STREAMS", stream, last_id
                )
            except REDIS_DOWN as exc:
                bus.redis_errors["read"] += 1
                log.warning("bus.follow_unreachable", stream=stream, error=repr(exc))
                await backoff.sleep()
                continue
            backoff.reset()
            for entry_id, fields in parse_entries(response):
                last_id = entry_id
                handle(entry_id, fields)
    finally:
        await line.close()
