"""The health desk: answers ``health.command`` on ``{ns}:health`` with the latest
report of this process's prober (which knows every process's findings)."""

from __future__ import annotations

from typing import ClassVar

from bus import Bus, Deferred, Delivery, Message, Rejected

from ..messages import HealthCommand, health_stream
from ..runtime import Actor
from .prober import HealthProber

__all__ = ["HealthDesk"]


class HealthDesk(Actor):
    """``status``: the latest report; ``probe``: the providers this process probes
    (holds the lease of) probed now, then the report."""

    group: ClassVar[str] = "health"

    def __init__(self, bus: Bus, prober: HealthProber, *, concurrency: int) -> None:
        super().__init__(bus, stream=health_stream(bus.names), concurrency=concurrency)
        self.prober = prober

    async def handle(self, message: Message, delivery: Delivery) -> Message | Deferred | None:
        if not isinstance(message, HealthCommand):
            raise Rejected(f"health does not take {type(message).__name__}")
        if message.action == "probe":  # the providers this process holds the lease of
            await self.prober.probe_once(await self.prober.mine())
        return self.prober.latest
