"""Restart crashed actors, with backoff, and say why."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import structlog

from bus import Backoff

from ._actor import Actor

__all__ = ["Supervisor"]

log = structlog.get_logger("supervisor")

ActorFactory = Callable[[], Actor]


class Supervisor:
    """Starts actors in order, restarts any that crashes, stops them in reverse order.

    A failure while starting is raised to the caller (a bad config must stop the
    program). After a crash the actor is stopped, then rebuilt from its factory and
    started again after a backoff that doubles from ``backoff_base`` to
    ``backoff_max`` seconds and starts over once the actor has run ``stable_after``
    seconds without crashing.
    """

    def __init__(
        self,
        factories: Sequence[ActorFactory],
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._factories = list(factories)
        self._backoff = (backoff_base, backoff_max)
        self._stable_after = stable_after
        self._stop_timeout = stop_timeout
        self.actors: list[Actor] = []
        self.restarts = 0
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every actor; returns when all consume."""
        for index, factory in enumerate(self._factories):
            try:
                actor = factory()
                await actor.start()
            except BaseException:
                await self.stop()
                raise
            self.actors.append(actor)
            self._watchers.append(asyncio.create_task(self._watch(index), name="supervise"))

    async def stop(self, timeout: float | None = None) -> None:
        """Stop watching, then stop every actor, last started first."""
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers = []
        for actor in reversed(self.actors):
            await actor.stop(self._stop_timeout if timeout is None else timeout)
        self.actors = []

    async def _watch(self, index: int) -> None:
        backoff = Backoff(*self._backoff)
        while True:
            actor = self.actors[index]
            started = time.monotonic()
            cause = await actor.crashed()
            if time.monotonic() - started >= self._stable_after:
                backoff.reset()
            log.error("actor.crashed", actor=actor.name, error=repr(cause))
            await actor.stop(self._stop_timeout)
            self.actors[index] = await self._restart(index, backoff)

    async def _restart(self, index: int, backoff: Backoff) -> Actor:
        while True:
            delay = await backoff.sleep()
            try:
                actor = self._factories[index]()
                await actor.start()
            except Exception as exc:
                log.error("actor.restart_failed", error=repr(exc), after_s=round(delay, 3))
                continue
            self.restarts += 1
            log.warning("actor.restarted", actor=actor.name, after_s=round(delay, 3))
            return actor
