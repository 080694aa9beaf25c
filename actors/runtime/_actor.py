"""The actor base class: inbox streams, a handler, a lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, ClassVar

import structlog

from bus import Bus, Deferred, Delivery, Message, Subscription

__all__ = ["Actor"]


class Actor:
    """An independent unit that others reach only through its inbox streams.

    Subclasses set ``group`` (the consumer group all its instances share, on each of
    its streams, so that several processes spread the work), implement ``handle``
    (dispatch with
    ``match``/``case`` over the inbox's message types) and may override ``on_start``
    and ``on_stop``. ``start()`` returns when the actor is consuming; ``stop()``
    drains in-flight messages up to a deadline, then fails what is left with a typed
    error (see ``bus.Subscription.stop``). A crash of the actor's own machinery (its
    reader, or a task started with ``spawn``) resolves ``crashed()``, which the
    supervisor waits on to restart it.
    """

    group: ClassVar[str]

    def __init__(
        self,
        bus: Bus,
        *,
        stream: str,
        concurrency: int = 1,
        also: tuple[str, ...] = (),
    ) -> None:
        self.bus = bus
        self.stream = stream  # its own inbox
        self.streams = (stream, *also)  # and streams it follows as a group too (events)
        self.concurrency = concurrency
        self.log = structlog.get_logger("actor").bind(actor=self.group)
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._crash: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    @property
    def name(self) -> str:
        return self.group

    async def on_start(self) -> None:
        """Set up before consuming (load state, open clients)."""

    async def on_stop(self) -> None:
        """Release what ``on_start`` took."""

    async def handle(self, message: Message, delivery: Delivery) -> Message | Deferred | None:
        """Handle one message; return the reply, if it was asked (``DEFERRED``: it
        will be sent later with ``Bus.reply``)."""
        raise NotImplementedError

    async def start(self) -> None:
        """Start consuming; a failure in ``on_start`` or in joining the group is raised."""
        await self.on_start()
        try:
            for stream in self.streams:
                sub = self.bus.subscribe(
                    stream, self.group, self._dispatch, concurrency=self.concurrency
                )
                await sub.start()
                sub.failed.add_done_callback(lambda f: self._crashed(f.result()))
                self._subscriptions.append(sub)
        except BaseException:
            for sub in self._subscriptions:
                await sub.stop(0)
            self._subscriptions = []
            await self.on_stop()
            raise
        self.log.info("actor.started", streams=self.streams, concurrency=self.concurrency)

    async def stop(self, timeout: float = 10.0) -> None:
        """Drain in-flight messages for ``timeout`` seconds, cancel the rest, clean up."""
        for sub in self._subscriptions:
            await sub.stop(timeout)
        self._subscriptions = []
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.on_stop()
        self.log.info("actor.stopped")

    @property
    def alive(self) -> bool:
        """Started and not crashed."""
        return not self._crash.done()

    async def crashed(self) -> BaseException:
        """Wait until the actor's machinery fails; returns the cause."""
        return await asyncio.shield(self._crash)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a background task whose failure counts as a crash of the actor."""
        task = asyncio.create_task(coro, name=f"{self.group}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._crashed(task.exception())  # type: ignore[arg-type]

    def _crashed(self, exc: BaseException) -> None:
        if not self._crash.done():
            self._crash.set_result(exc)

    async def _dispatch(self, message: Message, delivery: Delivery) -> Message | Deferred | None:
        structlog.contextvars.bind_contextvars(
            actor=self.group,
            request_id=getattr(message, "request_id", None) or delivery.correlation_id,
        )
        return await self.handle(message, delivery)
