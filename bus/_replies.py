"""Replies: one reply stream per process, matched to waiting asks by correlation id."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

import structlog

from ._codec import CORR, TYPE, Message
from ._errors import AskTimeout, DecodeError
from ._tail import follow

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["Replies", "ReplyQueue"]

log = structlog.get_logger("bus")


class ReplyQueue:
    """The replies of one streaming ask, in order, until its caller stops reading."""

    def __init__(self, stream: str, timeout: float) -> None:
        self._items: collections.deque[Message | BaseException] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._stream = stream
        self._timeout = timeout

    def put(self, item: Message | BaseException) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self, deadline: float) -> Message:
        """The next reply; raises ``AskTimeout`` at ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        while not self._items:
            self._waiter = loop.create_future()
            # A timer, not a cancellation: it cannot be lost (see cancel_and_wait).
            timer = loop.call_at(deadline, _expire, self._waiter)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._items and loop.time() >= deadline:
                raise AskTimeout(self._stream, self._timeout)
        item = self._items.popleft()
        if isinstance(item, BaseException):
            raise item
        return item


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Replies:
    """Waiting asks by correlation id, fed by one listener on the process's reply stream."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.pending: dict[bytes, asyncio.Future[Message] | ReplyQueue] = {}
        self.dropped = 0
        self.garbage = 0
        self._log = log.bind()  # resolved once: see Bus

    async def listen(self, stream: str, last_id: bytes) -> None:
        """Read the reply stream forever (until cancelled)."""
        await follow(self._bus, stream, last_id, 256, self.deliver)

    def deliver(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        corr = fields.get(CORR)
        if corr is None or not self._bus.codec.knows(fields.get(TYPE)):
            # Not a reply of ours at all: someone wrote to this stream by mistake.
            self.garbage += 1
            log.warning("bus.reply_garbage", entry_id=entry_id.decode(),
                        fields=sorted(f.decode(errors="replace") for f in fields)[:8])  # fmt: skip
            return
        waiting = self.pending.get(corr)
        if waiting is None or (isinstance(waiting, asyncio.Future) and waiting.done()):
            self.dropped += 1  # late (its asker gave up) or a duplicate
            self._log.debug("bus.reply_dropped", corr=corr.decode(errors="replace"))
            return
        try:
            envelope = self._bus.codec.decode(fields)
        except DecodeError as exc:
            reply: Message | BaseException = exc
        else:
            reply = envelope.message
            self._log.debug("bus.reply", corr=envelope.correlation_id, type=type(reply).__name__)
        if isinstance(waiting, ReplyQueue):
            waiting.put(reply)
            return
        del self.pending[corr]
        if isinstance(reply, BaseException):
            waiting.set_exception(reply)
        else:
            waiting.set_result(reply)

    def fail_all(self, error: BaseException) -> None:
        for waiting in self.pending.values():
            if isinstance(waiting, ReplyQueue):
                waiting.put(error)
            elif not waiting.done():
                waiting.set_exception(error)
        self.pending.clear()
