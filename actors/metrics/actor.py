"""The metrics actor: keeps the deployment's numbers from every process's events."""

from __future__ import annotations

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
from ._series import updates

__all__ = ["MetricsActor"]


class MetricsActor(Actor):
    """Reads ``{ns}:events`` as group ``metrics`` (each event counted once, by one of
    the processes) into one Redis hash, ``{ns}:metrics:series``, so that every process
    shows the whole deployment; answers ``metrics.command`` on ``{ns}:metrics``."""

    group: ClassVar[str] = "metrics"

    def __init__(self, bus: Bus, *, concurrency: int) -> None:
        super().__init__(bus, stream=metrics_stream(bus.names), also=(bus.names.events,),
                         concurrency=concurrency)  # fmt: skip
        self.series = f"{bus.names.ns}:metrics:series"

    async def handle(self, message: Message, delivery: Delivery) -> Message | Deferred | None:
        if isinstance(message, MetricsCommand):
            if message.action == "reset":
                await self.bus.redis.delete(self.series)
            return await self.snapshot()
        if delivery.stream == self.bus.names.events:
            for update in updates(message):
                command = "HINCRBYFLOAT" if update.op == "add" else "HSET"
                # With this process's next write: no round trip of its own.
                self.bus.writer.submit([command, self.series, update.key, repr(update.value)])
            return None
        raise Rejected(f"metrics does not take {type(message).__name__}")

    async def snapshot(self) -> MetricsSnapshot:
        redis = self.bus.redis
        raw: Any = await redis.hgetall(self.series)
        series = {bytes(k).decode(): float(v) for k, v in raw.items()}
        names = self.bus.names
        streams = [names.requests, names.events, limiter_stream(names), quota_stream(names),
                   cache_stream(names), health_stream(names), metrics_stream(names)]  # fmt: skip
        streams += [bytes(k).decode() async for k in redis.scan_iter(
            match=f"{names.ns}:calls:*", _type="stream")]  # fmt: skip
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
        return MetricsSnapshot(series=series, pending=pending, dead_letters=dead,
                               taken_at_ms=self.bus.now_ms())  # fmt: skip
