"""Subscribing to alerts: an async iterator over ``{ns}:alerts``.

Two ways to listen::

    async with Bus(redis_url, CODEC, BusConfig(namespace="aio")) as bus:
        # Every alert from now on, in this process only (a tail; nothing is replayed):
        async with Alerts(bus) as alerts:
            async for alert in alerts:
                print(alert.type, alert)

        # Or durably, in a consumer group: alerts published while no member listened
        # are delivered when one is back, each to one member of the group. An alert
        # counts as handled when the loop asks for the next one (or leaves the block
        # normally); one whose loop body raised is delivered again.
        async with Alerts(bus, group="pager", types={"quota.exceeded"}) as alerts:
            async for alert in alerts:
                await page(alert)

The alerts are ``QuotaExceeded``, ``QuotaWarning`` and ``RateLimitExceeded`` (and
whatever later issues add to ``{ns}:alerts``), as typed messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from types import TracebackType
from typing import Any, cast

import msgspec
import structlog

from bus import Bus, DecodeError, Delivery, Message, Subscription, Tail

__all__ = ["Alerts", "recent_alerts"]

log = structlog.get_logger("alerts")

_TAIL_BACKLOG = 10_000  # alerts a slow tail reader may fall behind before some are dropped


class _NotHandled(Exception):
    """An alert the reader did not handle: left unacknowledged, delivered again."""


class Alerts:
    """An async iterator of the alerts on ``{ns}:alerts`` (see the module's docstring)."""

    def __init__(
        self,
        bus: Bus,
        *,
        group: str | None = None,
        types: Collection[str] | None = None,
        start: str = "$",
    ) -> None:
        """``group``: listen durably in that consumer group (else a tail from now);
        ``types``: only these message types (``quota.exceeded``, ...); ``start``: where
        a new group begins (``"$"``: new alerts only, ``"0"``: all the stream holds)."""
        self.bus = bus
        self.group = group
        self.types = frozenset(types) if types is not None else None
        self.start_id = start
        self.dropped = 0  # alerts a tail dropped because the reader fell too far behind
        self._queue: asyncio.Queue[tuple[Message, asyncio.Future[None] | None]] = asyncio.Queue()
        self._in_hand: asyncio.Future[None] | None = None
        self._closing = False
        self._source: Subscription | Tail | None = None

    async def __aenter__(self) -> Alerts:
        stream = self.bus.names.alerts
        if self.group is None:
            self._source = await self.bus.tail(stream, self._from_tail)
        else:
            sub = self.bus.subscribe(stream, self.group, self._from_group, start_id=self.start_id)
            await sub.start()
            self._source = sub
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Left normally: the alert in hand was handled. Left by an exception: it was
        # not, and goes back to the group to be delivered again.
        self._settle(ok=exc_type is None)
        self._closing = True
        while not self._queue.empty():  # handed over but never yielded: not handled
            _message, done = self._queue.get_nowait()
            if done is not None and not done.done():
                done.set_exception(_NotHandled("the reader left before this alert"))
        source, self._source = self._source, None
        if isinstance(source, Subscription):
            await source.stop(timeout=1.0)
        elif isinstance(source, Tail):
            await source.stop()

    def __aiter__(self) -> Alerts:
        return self

    async def __anext__(self) -> Message:
        if self._source is None:
            raise RuntimeError("use `async with Alerts(...) as alerts:` before iterating")
        self._settle(ok=True)  # asking for the next one: the last one was handled
        message, self._in_hand = await self._queue.get()
        return message

    def _settle(self, *, ok: bool) -> None:
        done, self._in_hand = self._in_hand, None
        if done is not None and not done.done():
            if ok:
                done.set_result(None)
            else:
                done.set_exception(_NotHandled("the reader failed on this alert"))

    def _wanted(self, message: Message) -> bool:
        return self.types is None or self.bus.codec.tag(type(message)) in self.types

    def _from_tail(self, message: Message) -> None:
        if not self._wanted(message):
            return
        if self._queue.qsize() >= _TAIL_BACKLOG:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("alerts.dropped", dropped=self.dropped, backlog=_TAIL_BACKLOG)
            return
        self._queue.put_nowait((message, None))

    async def _from_group(self, message: Message, _delivery: Delivery) -> None:
        if not self._wanted(message):
            return  # acknowledged: not what this group listens for
        if self._closing:
            raise _NotHandled("the reader has left; the alert goes back to the group")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((message, done))
        await done  # acknowledged once the reader has handled it; raises if it failed


async def recent_alerts(
    bus: Bus, *, after: str | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], str]:
    """The alerts on ``{ns}:alerts`` after the entry id ``after``, oldest first, at most
    ``limit`` of them (without ``after``: the latest ``limit``); and the id to ask
    after next time. Each is ``{"id", "type", "data"}``; one that cannot be decoded
    (a publisher's mistake) comes with ``error`` and empty ``data``."""
    stream, redis = bus.names.alerts, cast(Any, bus.redis)
    entries: list[tuple[bytes, dict[bytes, bytes]]]
    if after:
        entries = await redis.xrange(stream, min=f"({after}", count=limit)
    else:
        entries = list(reversed(await redis.xrevrange(stream, count=limit)))
    rows: list[dict[str, Any]] = []
    for entry_id, fields in entries:
        row: dict[str, Any] = {"id": entry_id.decode(), "type": "", "data": {}}
        try:
            data = msgspec.to_builtins(bus.codec.decode(fields).message)
            row["type"] = data.pop("type")
            row["data"] = data
        except DecodeError as exc:
            row["type"] = fields.get(b"type", b"").decode(errors="replace")[:64]
            row["error"] = str(exc)[:200]
        rows.append(row)
    return rows, rows[-1]["id"] if rows else (after or "")
