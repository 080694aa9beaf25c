"""How loaded each provider deployment is, across every process: its calls in flight
(the entries its breakers hold, read from their consumer group) and what is left of
its grants (requests and tokens per minute); re-read every ``refresh_ms``. The planner
orders a model's deployments by it (``router.balance``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

import structlog

from bus import REDIS_DOWN, Bus, cancel_and_wait

__all__ = ["DeploymentLoad"]

log = structlog.get_logger("routing")

# The consumer group of every breaker's call stream (``Breaker.group``).
_GROUP = "breaker"


class DeploymentLoad:
    """Calls in flight and grant headroom per deployment, as last read."""

    def __init__(
        self,
        bus: Bus,
        deployments: list[str],
        headroom: Mapping[str, Callable[[], Awaitable[float]]] | None = None,
        refresh_ms: int = 250,
        steps: Mapping[str, float] | None = None,
    ) -> None:
        self.bus = bus
        self.deployments = deployments
        self._headroom_of = headroom or {}
        self.refresh_s = refresh_ms / 1000
        self._busy: dict[str, int] = {}
        self._headroom: dict[str, float] = {}
        # The share of its grant one call takes (1 / requests_per_minute): between two
        # reads, each call this process sends is counted at once.
        self._steps = dict(steps or {})
        self._task: asyncio.Task[None] | None = None

    def busy(self, deployment: str) -> int:
        """Calls in flight at the deployment, from every process (0: not known)."""
        return self._busy.get(deployment, 0)

    def headroom(self, deployment: str) -> float:
        """The share left of its tightest grant, 0 to 1 (1: no grant, or not known)."""
        return self._headroom.get(deployment, 1.0)

    def sent(self, deployment: str) -> None:
        """A call is going to the deployment: counted here until the next read."""
        self._busy[deployment] = self._busy.get(deployment, 0) + 1
        step = self._steps.get(deployment)
        if step is not None:
            self._headroom[deployment] = max(0.0, self.headroom(deployment) - step)

    async def start(self) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="deployment-load")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def refresh(self) -> None:
        for name in self.deployments:
            stream = self.bus.names.calls(name)
            try:
                pending = await self.bus.redis.xpending(stream, _GROUP)
            except Exception:  # no group yet (no breaker started): nothing in flight
                pending = {"pending": 0}
            self._busy[name] = int(pending.get("pending", 0) or 0)
        for name, read in self._headroom_of.items():
            self._headroom[name] = await read()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except Exception as exc:  # stale until the next read, never stopped
                log.warning("routing.load_stale", error=repr(exc))
