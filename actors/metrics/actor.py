"""The metrics actor: keeps the deployment's numbers from every process's events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from bus import Bus, Deferred, Delivery, Message, Rejected

from ..messages import (
    MetricsCommand,
    MetricsSnapshot,
    RequestCompleted,
    TimelineQuery,
    TimelineReport,
    UsersQuery,
    actor_streams,
    metrics_stream,
)
from ..runtime import Actor
from ._series import BREAKER_STATES, key_of, updates
from ._timeline import TimelineBook
from ._usage import UsageBook

__all__ = ["MetricsActor"]

_FRESH_S = 1.0
_FLUSH_S = 0.5


class MetricsActor(Actor):
    """Reads ``{ns}:events`` as group ``metrics`` (each event counted once, by one of
    the processes) into one Redis hash, ``{ns}:metrics:series``, so that every process
    shows the whole deployment; answers ``metrics.command``, ``metrics.timeline`` and
    ``metrics.users`` on ``{ns}:metrics``. Changes reach Redis every half second,
    summed (a crash loses at most that much); so do each user's usage of the day and
    month (``_usage``) and the last hour's traffic in ten-second steps (``_timeline``)."""

    group: ClassVar[str] = "metrics"

    def __init__(
        self,
        bus: Bus,
        *,
        providers: Sequence[str] = (),
        breakers: Callable[[], dict[str, str]] | None = None,
        timezone: str = "UTC",
        concurrency: int,
    ) -> None:
        super().__init__(bus, stream=metrics_stream(bus.names), also=(bus.names.events,),
                         concurrency=concurrency)  # fmt: skip
        self.series = f"{bus.names.ns}:metrics:series"
        self.providers = list(providers)  # whose call streams are looked at
        self.breakers = breakers  # the breakers' states as this process sees them
        self._last: tuple[float, MetricsSnapshot] | None = None
        self._timelines: dict[int, tuple[float, TimelineReport]] = {}  # by minutes, as _last
        # One flush at a time: two in flight could land out of order (a gauge's older
        # value over its newer one).
        self._flushing_now = asyncio.Lock()
        # Changes gathered here and written together every _FLUSH_S (a request's ~20
        # series would otherwise be ~20 Redis commands each): adds summed, sets last.
        self._adds: dict[str, float] = {}
        self._sets: dict[str, float] = {}
        self.usage = UsageBook(bus.names.ns, timezone)  # per user, by day and month
        self.timeline = TimelineBook(bus.names.ns)  # the last hour, in steps

    async def on_start(self) -> None:
        self.spawn(self._flushing(), "metrics-flush")

    async def on_stop(self) -> None:
        await self.flush()

    async def _flushing(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_S)
            try:
                await self.flush()
            except Exception as exc:  # Redis away: kept for the next time
                self.log.info("metrics.flush_failed", error=repr(exc))

    async def flush(self) -> None:
        """Write what was gathered, in one round trip."""
        async with self._flushing_now:
            await self._flush()

    async def _flush(self) -> None:
        if not (self._adds or self._sets):  # (every request.completed adds to them)
            return
        adds, sets = self._adds, self._sets
        self._adds, self._sets = {}, {}
        pipe = self.bus.redis.pipeline(transaction=False)
        used = self.usage.drain(pipe)
        steps = self.timeline.drain(pipe)
        for key, value in adds.items():
            pipe.hincrbyfloat(self.series, key, value)
        if sets:
            pipe.hset(self.series, mapping=sets)  # type: ignore[arg-type]
        try:
            await pipe.execute()
        except Exception:
            for key, value in adds.items():  # not lost: added to what comes next
                self._adds[key] = self._adds.get(key, 0.0) + value
            self._sets = sets | self._sets
            self.usage.restore(used)
            self.timeline.restore(steps)
            raise

    async def handle(self, message: Message, delivery: Delivery) -> Message | Deferred | None:
        if isinstance(message, MetricsCommand):
            if message.action == "reset":
                self._adds, self._sets = {}, {}
                self.usage.forget()
                self.timeline.forget()
                await self._delete_all()
                self._last = None
                self._timelines.clear()
            else:
                await self.flush()  # this process's latest too
            return await self.snapshot()
        if isinstance(message, TimelineQuery):
            return await self._timeline(message.minutes)
        if isinstance(message, UsersQuery):
            await self.flush()
            return await self.usage.page(self.bus.redis, self.bus.now_ms(), message)
        if delivery.stream == self.bus.names.events:
            if isinstance(message, RequestCompleted):
                self.usage.observe(message)
                self.timeline.observe(message)
            for update in updates(message):
                if update.op == "add":
                    self._adds[update.key] = self._adds.get(update.key, 0.0) + update.value
                else:
                    self._sets[update.key] = update.value
            return None
        raise Rejected(f"metrics does not take {type(message).__name__}")

    async def _delete_all(self) -> None:
        """Every key of the metrics: the series, the usage, the timeline (a reset)."""
        redis = self.bus.redis
        pipe = redis.pipeline(transaction=False)
        async for key in redis.scan_iter(match=f"{self.bus.names.ns}:metrics:*"):
            pipe.delete(key)  # one key a command: each may live on its own shard
        await pipe.execute()

    async def _timeline(self, minutes: int) -> TimelineReport:
        """The last ``minutes`` (read at most once a second: the endpoint is public)."""
        now = time.monotonic()
        kept = self._timelines.get(minutes)
        if kept is not None and now - kept[0] < _FRESH_S:
            return kept[1]
        await self.flush()
        report = await self.timeline.read(self.bus.redis, self.bus.now_ms(), minutes)
        self._timelines[minutes] = (now, report)
        return report

    async def snapshot(self) -> MetricsSnapshot:
        """The numbers as they stand (taken at most once a second: scrapes are cheap)."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < _FRESH_S:
            return self._last[1]
        taken = await self._take()
        self._last = (now, taken)
        return taken

    async def _take(self) -> MetricsSnapshot:
        redis = self.bus.redis
        raw: Any = await redis.hgetall(self.series)
        series = {bytes(k).decode(): float(v) for k, v in raw.items()}
        names = self.bus.names
        # Every stream's groups in two round trips (it was one round trip a stream).
        streams = await self.bus.inspect(actor_streams(names, self.providers))
        pending = {f"{s.stream}|{g.group}": g.pending for s in streams for g in s.groups}
        dead = int(await redis.xlen(names.dead))
        if self.breakers is not None:  # the breakers' states now, not their last events
            for provider, state in self.breakers().items():
                key = key_of("g", "aio_breaker_state", {"provider": provider})
                series[key] = BREAKER_STATES.get(state, 0.0)
        now = self.bus.now_ms()
        usage = await self.usage.read(redis, now)
        return MetricsSnapshot(series=series, pending=pending, dead_letters=dead,
                               taken_at_ms=now, usage=usage)  # fmt: skip
