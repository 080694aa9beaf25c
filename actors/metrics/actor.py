"""The metrics actor: keeps the deployment's numbers from every process's events."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from bus import Bus, Deferred, Delivery, Message, Rejected

from ..messages import (
    MetricsCommand,
    MetricsSnapshot,
    cache_stream,
    health_stream,
    limiter_stream,
    metrics_stream,
    quota_stream,
)
from ..runtime import Actor
from ._series import BREAKER_STATES, key_of, updates

__all__ = ["MetricsActor"]

_FRESH_S = 1.0


class MetricsActor(Actor):
    """Reads ``{ns}:events`` as group ``metrics`` (each event counted once, by one of
    the processes) into one Redis hash, ``{ns}:metrics:series``, so that every process
    shows the whole deployment; answers ``metrics.command`` on ``{ns}:metrics``."""

    group: ClassVar[str] = "metrics"

    def __init__(
        self,
        bus: Bus,
        *,
        providers: Sequence[str] = (),
        breakers: Callable[[], dict[str, str]] | None = None,
        concurrency: int,
    ) -> None:
        super().__init__(bus, stream=metrics_stream(bus.names), also=(bus.names.events,),
                         concurrency=concurrency)  # fmt: skip
        self.series = f"{bus.names.ns}:metrics:series"
        self.providers = list(providers)  # whose call streams are looked at
        self.breakers = breakers  # the breakers' states as this process sees them
        self._last: tuple[float, MetricsSnapshot] | None = None

    async def handle(self, message: Message, delivery: Delivery) -> Message | Deferred | None:
        if isinstance(message, MetricsCommand):
            if message.action == "reset":
                await self.bus.redis.delete(self.series)
                self._last = None
            return await self.snapshot()
        if delivery.stream == self.bus.names.events:
            for update in updates(message):
                command = "HINCRBYFLOAT" if update.op == "add" else "HSET"
                # With this process's next write: no round trip of its own.
                self.bus.writer.submit([command, self.series, update.key, repr(update.value)])
            return None
        raise Rejected(f"metrics does not take {type(message).__name__}")

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
        streams = [names.requests, names.events, limiter_stream(names), quota_stream(names),
                   cache_stream(names), health_stream(names), metrics_stream(names)]  # fmt: skip
        streams += [names.calls(provider) for provider in self.providers]
        pending: dict[str, int] = {}
        for stream in streams:
            try:
                groups: Any = await redis.xinfo_groups(stream)
            except Exception:  # no such stream yet
                continue
            for group in groups:
                name = group["name"]
                pending[f"{stream}|{bytes(name).decode() if isinstance(name, bytes) else name}"] = (
                    int(group["pending"])
                )
        dead = int(await redis.xlen(names.dead))
        if self.breakers is not None:  # the breakers' states now, not their last events
            for provider, state in self.breakers().items():
                key = key_of("g", "aio_breaker_state", {"provider": provider})
                series[key] = BREAKER_STATES.get(state, 0.0)
        return MetricsSnapshot(series=series, pending=pending, dead_letters=dead,
                               taken_at_ms=self.bus.now_ms())  # fmt: skip
