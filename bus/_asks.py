"""Asks: publish a message for a reply, and decide from what Redis says whether it was
taken in time (see ``Bus.ask``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from ._codec import Failure, Message, added_ms
from ._errors import REDIS_DOWN, AskTimeout, BusError, BusUnavailable, NotSent, RemoteError, Stopped
from ._replies import ReplyQueue
from ._scripts import call

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["ask_all", "ask_stream"]

log = structlog.get_logger("bus")


@dataclass(frozen=True, slots=True)
class _Ask:
    """An ask's entry as published: where, under which correlation id, and by when
    Redis must have added it for it to be acted on."""

    stream: str
    corr: str
    publish_by: int


def ask_fields(
    bus: Bus, stream: str, message: Message, corr: str, timeout: float
) -> tuple[dict[bytes, bytes], _Ask]:
    if not bus._started:
        raise Stopped("the bus is not started")
    now = bus.now_ms()
    # A write that has not come back by then is given up (the connection's socket
    # timeout, counted from the send, is command_timeout_ms); an entry Redis adds
    # after publish_by is dropped unread. The margin covers this clock's error.
    timeout_ms = bus.config.command_timeout_ms
    publish_by = now + timeout_ms - min(250, timeout_ms // 4)
    fields = bus.codec.fields(
        message,
        correlation_id=corr,
        reply_to=bus.reply_stream,
        deadline_ms=now + int(timeout * 1000),
        publish_by_ms=publish_by,
    )
    return fields, _Ask(stream, corr, publish_by)


async def publish_asks(
    bus: Bus, asks: list[_Ask], commands: list[list[Any]], give_up: float
) -> list[Exception | None]:
    """Publish the entries of asks; for each, None when Redis added it by its
    ``publish_by`` (it will be acted on, a reply will come), or the error that
    answers it (``BusUnavailable``: it will never be acted on).

    When Redis's answer to the write is lost (a timeout, a broken connection), it is
    not known whether the write was taken: Redis is then asked, until ``give_up``
    (loop time), whether each entry is there with an id no later than its
    ``publish_by`` (past that, one that comes later is dropped unread). If Redis
    cannot say by then, None: the caller waits for a reply that may come.
    """
    try:
        results: list[Any] = await bus.writer.execute(*commands)
    except NotSent as exc:  # not a byte went out
        bus.redis_errors["ask"] += 1
        return [BusUnavailable(f"could not publish an ask: {exc}") for _ in asks]
    except REDIS_DOWN as exc:
        bus.redis_errors["ask"] += 1
        log.warning("bus.ask_outcome_unknown", error=repr(exc), asks=len(asks))
        found = await find_asks(bus, asks, give_up)
        if found is None:
            log.warning("bus.ask_outcome_still_unknown", asks=len(asks))
            return [None for _ in asks]
        return [
            None if taken else BusUnavailable(
                f"could not publish an ask ({exc!r}); Redis did not take it in time, so "
                "it will not be acted on"
            )
            for taken in found
        ]  # fmt: skip
    outcomes: list[Exception | None] = []
    for ask, result in zip(asks, results, strict=True):
        if isinstance(result, Exception):
            outcomes.append(result)
        elif added_ms(result) > ask.publish_by:
            outcomes.append(BusUnavailable(
                f"Redis took the ask at {result.decode()}, after its publish_by "
                f"{ask.publish_by} (Redis stalled, or the stream's ids run ahead of its "
                "clock): it will not be acted on"
            ))  # fmt: skip
        else:
            outcomes.append(None)
    return outcomes


async def find_asks(bus: Bus, asks: list[_Ask], give_up: float) -> list[bool] | None:
    """For each ask, whether Redis added its entry by its ``publish_by``; None if
    Redis cannot say before ``give_up`` (loop time)."""
    loop = asyncio.get_running_loop()
    backoff = bus._backoff()
    # The write cannot have been added before its fields were made.
    window = bus.config.command_timeout_ms + 1_000
    while True:
        try:
            return [
                bool(await call(bus.scripts.find_ask, [ask.stream],
                                [ask.publish_by - window, ask.publish_by, ask.corr]))
                for ask in asks
            ]  # fmt: skip
        except REDIS_DOWN:
            if loop.time() + backoff.next_delay() >= give_up:
                return None
            await backoff.sleep()


async def ask_all(
    bus: Bus,
    asks: Sequence[tuple[str, Message]],
    timeout: float,
    *,
    correlation_ids: Sequence[str | None] = (),
) -> list[Message | BusError]:
    """Publish several asks in one round trip and wait for all their replies.

    Each answer is the reply, or in its place the error ``ask`` would raise for it
    (``AskTimeout``, ``RemoteError``); ``BusUnavailable`` is raised as ``ask``
    raises it. The whole exchange is bounded by ``timeout``.
    """
    if not asks:
        return []
    loop = asyncio.get_running_loop()
    waits: list[tuple[bytes, asyncio.Future[Message], asyncio.TimerHandle]] = []
    commands = []
    published: list[_Ask] = []
    chosen = list(correlation_ids) + [None] * (len(asks) - len(correlation_ids))
    try:
        for (stream, message), given in zip(asks, chosen, strict=True):
            corr = given or os.urandom(12).hex()
            fields, ask = ask_fields(bus, stream, message, corr, timeout)
            reply: asyncio.Future[Message] = loop.create_future()
            key = corr.encode()
            bus._replies.pending[key] = reply
            # The wait ends by a timer, not a cancellation, so it cannot be lost
            # (see cancel_and_wait); the publish is bounded by its own timeouts.
            waits.append((key, reply, loop.call_later(timeout, _expire, reply, stream,
                                                      timeout)))  # fmt: skip
            commands.append(bus._xadd(stream, fields))
            published.append(ask)
            bus._log.debug("bus.ask", to=stream, type=type(message).__name__, corr=corr,
                            timeout_s=timeout)  # fmt: skip
        outcomes = await publish_asks(bus, published, commands, loop.time() + timeout)
        if all(isinstance(o, BusUnavailable) for o in outcomes):
            raise outcomes[0]  # type: ignore[misc]
        for (_key, reply, _timer), outcome in zip(waits, outcomes, strict=True):
            if outcome is not None and not reply.done():
                reply.set_exception(outcome)
        answers: list[Message | BusError] = []
        for _key, reply, _timer in waits:
            try:
                answer = await reply
            except BusError as exc:
                answers.append(exc)
                continue
            answers.append(
                RemoteError(answer.kind, answer.message)
                if isinstance(answer, Failure) else answer
            )  # fmt: skip
        return answers
    finally:
        for key, reply, timer in waits:
            timer.cancel()
            bus._replies.pending.pop(key, None)
            if not reply.done():
                reply.cancel()


async def ask_stream(
    bus: Bus, stream: str, message: Message, timeout: float, *, correlation_id: str | None = None
) -> AsyncGenerator[Message, None]:
    """Publish ``message`` and yield its replies, in order, until the caller stops.

    The consumer sends any number of replies (``reply()`` with the delivery's
    correlation id) and its handler's return value last; the caller knows which
    message ends the exchange. The whole exchange is bounded by ``timeout``;
    failures to publish are raised as ``ask`` raises them.
    """
    corr = correlation_id or os.urandom(12).hex()
    fields, ask = ask_fields(bus, stream, message, corr, timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    queue = ReplyQueue(stream, timeout)
    key = corr.encode()
    bus._replies.pending[key] = queue
    bus._log.debug("bus.ask", to=stream, type=type(message).__name__, corr=corr,
                    timeout_s=timeout, stream=True)  # fmt: skip
    try:
        (outcome,) = await publish_asks(bus, [ask], [bus._xadd(stream, fields)], deadline)
        if outcome is not None:
            raise outcome
        while True:
            answer = await queue.get(deadline)
            if isinstance(answer, Failure):
                raise RemoteError(answer.kind, answer.message)
            yield answer
    finally:
        bus._replies.pending.pop(key, None)


def _expire(reply: asyncio.Future[Message], stream: str, timeout: float) -> None:
    if not reply.done():
        reply.set_exception(AskTimeout(stream, timeout))
