"""One consumer of one stream in one group: read, claim, heartbeat, ack, dead-letter."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.exceptions
import structlog

from ._aio import Backoff, cancel_and_wait
from ._codec import (
    CORR,
    REPLY_TO,
    Envelope,
    Failure,
    Message,
    added_ms,
    trace_context,
    xadd_command,
)
from ._errors import REDIS_DOWN, BusUnavailable, DecodeError, Rejected
from ._line import Line, parse_entries
from ._scripts import call

if TYPE_CHECKING:
    from ._bus import Bus

__all__ = ["DEFERRED", "Deferred", "Delivery", "Handler", "Subscription"]

log = structlog.get_logger("bus")

ERROR_TTL_MS = 86_400_000


# How much of each field of an oversize entry its dead letter keeps (enough to tell
# what it was).
_OVERSIZE_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the bus knows of one delivery of an entry, beside its message."""

    entry_id: str
    stream: str
    deliveries: int  # 1 on the first delivery, more after a takeover or a failure
    correlation_id: str | None
    deadline_ms: int | None
    reply_to: str | None = None  # where an ask's replies go (``Bus.reply`` for partial ones)


class Deferred:
    """What a handler of an ask returns when its reply will be sent later, with
    ``Bus.reply`` to the delivery's ``reply_to`` and ``correlation_id`` (perhaps by
    another process): the entry is acknowledged and nothing is replied now."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = Deferred()

Handler = Callable[[Message, Delivery], Awaitable[Message | Deferred | None]]


class Subscription:
    """Consumes ``stream`` in ``group`` with at most ``concurrency`` handlers at once.

    At-least-once: an entry is acknowledged only after its handler returned. An entry
    whose handler raised stays pending and is delivered again once it has been idle
    for ``claim_idle_ms``; after ``max_deliveries`` it goes to the dead-letter stream.
    The entries a live consumer is still working on are re-claimed by its process's
    keepalive thread every ``claim_idle_ms / 3`` so that nobody takes them over, even
    while a handler keeps the event loop busy.
    """

    def __init__(
        self,
        bus: Bus,
        stream: str,
        group: str,
        handler: Handler,
        concurrency: int,
        start_id: str,
    ) -> None:
        self._bus = bus
        self.stream = stream
        self.group = group
        self._handler = handler
        self.concurrency = concurrency
        self._start_id = start_id
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._claim_cursor: bytes | str = "0-0"
        self._reader: asyncio.Task[None] | None = None
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self._errors_key = bus.names.errors(stream)
        self._log = log.bind(stream=stream, group=group)

    @property
    def consumer(self) -> str:
        return self._bus.node

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Create the group if needed; returns once the consumer is reading."""
        await self._create_group(recreated=False)
        self._reader = asyncio.create_task(self._read_loop(), name=f"read {self.stream}")
        self._reader.add_done_callback(self._reader_done)

    async def stop(self, timeout: float) -> None:
        """Stop reading; let handlers finish for ``timeout`` seconds, then cancel them.

        A cancelled handler's asker gets ``Failure(kind="stopped")`` and its entry is
        acknowledged; an entry nobody waits for stays pending for another consumer.
        """
        if self._reader is not None:
            self._reader.remove_done_callback(self._reader_done)
            await cancel_and_wait(self._reader)
        tasks = list(self._tasks.values())
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                await cancel_and_wait(task, timeout=self._bus.config.command_timeout_ms / 1000)
            if late:
                self._log.warning("bus.stop_cancelled", cancelled=len(late))
        self._bus._forget(self)

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.failed.done():
            return
        exc = task.exception()
        if exc is not None:
            self._log.error("bus.reader_crashed", error=repr(exc))
            self.failed.set_result(exc)

    async def _create_group(self, *, recreated: bool) -> None:
        start = "0" if recreated else self._start_id
        try:
            await self._bus.redis.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return
        if recreated:
            # The stream was lost (Redis restarted without persistence, or it was
            # deleted): whatever it holds now was published since, so read it all.
            self._log.warning("bus.group_recreated", start_id=start)
        else:
            self._log.info("bus.group_created", start_id=start)

    # -- reading ---------------------------------------------------------------

    async def _read_loop(self) -> None:
        cfg = self._bus.config
        backoff = self._bus._backoff()
        block = min(cfg.block_ms, cfg.claim_interval_ms)
        line = self._bus.reader(self.stream)
        try:
            await self._consume(line, block, backoff)
        finally:
            await line.close()

    async def _consume(self, line: Line, block: int, backoff: Backoff) -> None:
        cfg = self._bus.config
        loop = asyncio.get_running_loop()
        claim_due = 0.0
        lost_group = unreachable = False
        while True:
            await self._room.wait()
            try:
                if loop.time() >= claim_due:
                    claim_due = loop.time() + cfg.claim_interval_ms / 1000
                    await self._claim()
                room = self.concurrency - len(self._tasks)
                if room <= 0:
                    continue
                response = await line.call(
                    "XREADGROUP", "GROUP", self.group, self.consumer,
                    "COUNT", min(room, cfg.batch), "BLOCK", block, "STREAMS", self.stream, ">",
                )  # fmt: skip
                for entry_id, fields in parse_entries(response):
                    self._spawn(entry_id, fields, 1)
                if unreachable:
                    self._log.info("bus.reconnected")
                    claim_due = loop.time() + cfg.claim_idle_ms / 1000
                lost_group = unreachable = False
                backoff.reset()
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                if lost_group:  # lost again at once: do not spin
                    await backoff.sleep()
                lost_group = True
                try:
                    await self._create_group(recreated=True)
                except REDIS_DOWN:
                    self._bus.redis_errors["read"] += 1
                    await backoff.sleep()
            except REDIS_DOWN as exc:
                self._bus.redis_errors["read"] += 1
                if not unreachable:
                    self._log.warning("bus.unreachable", error=repr(exc))
                unreachable = True
                # While Redis was out of reach, so were the owners' heartbeats and
                # acknowledgements: every entry in flight looks idle right after. No
                # claim until a whole claim_idle_ms after Redis answers again, or a live
                # owner's entry, even one it has answered (its XACK queued behind the
                # stall), is taken over and run twice (seen in the soak).
                claim_due = math.inf
                await backoff.sleep()

    def _spawn(self, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int) -> None:
        task = asyncio.create_task(self._process(entry_id, fields, deliveries))
        self._tasks[entry_id] = task
        if len(self._tasks) >= self.concurrency:
            self._room.clear()
        task.add_done_callback(lambda _t: self._finished(entry_id))

    def _finished(self, entry_id: bytes) -> None:
        self._tasks.pop(entry_id, None)
        self._room.set()

    async def _claim(self) -> None:
        cfg = self._bus.config
        room = self.concurrency - len(self._tasks)
        if room <= 0:
            return
        run_by = self._bus.now_ms() + cfg.command_timeout_ms  # else it claims nothing
        next_id, claimed, gone = await call(
            self._bus.scripts.claim,
            [self.stream],
            [self.group, self.consumer, cfg.claim_idle_ms, self._claim_cursor, room, run_by],
        )
        self._claim_cursor = next_id
        if gone:
            # Trimmed while pending: only possible past the stream's max_len cap.
            self._log.error("bus.pending_entries_trimmed", ids=[i.decode() for i in gone])
            await self._bus.redis.xack(self.stream, self.group, *gone)
        for entry_id, flat, deliveries in claimed:
            if entry_id in self._tasks:
                continue  # still running here; its heartbeat was late
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            self._log.info("bus.claimed", entry_id=entry_id.decode(), deliveries=deliveries)
            if deliveries > cfg.max_deliveries:
                last_error = await self._bus.redis.hget(
                    self._errors_key, self._error_field(entry_id)
                )
                reason = f"failed {deliveries - 1} deliveries"
                if isinstance(last_error, bytes):
                    reason += f"; last error: {last_error.decode(errors='replace')}"
                await self._dead_letter(entry_id, fields, deliveries, reason)
            else:
                self._spawn(entry_id, fields, deliveries)

    def in_flight_ids(self) -> list[bytes]:
        """The entries its handlers are working on; safe to call from another thread
        (copying a dict of bytes keys runs in C, under the interpreter lock)."""
        return list(self._tasks)

    # -- handling --------------------------------------------------------------

    async def _process(self, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int) -> None:
        structlog.contextvars.bind_contextvars(stream=self.stream, message_id=entry_id.decode())
        size, most = (
            sum(len(k) + len(v) for k, v in fields.items()),
            self._bus.config.max_entry_bytes,
        )
        if size > most:
            kept = {name[:_OVERSIZE_KEPT]: value[:_OVERSIZE_KEPT] for name, value in fields.items()}
            why = f"oversize: {size} bytes, over bus.max_entry_bytes ({most})"
            await self._dead_letter(entry_id, kept, deliveries, why)
            return
        try:
            envelope = self._bus.codec.decode(fields)
        except DecodeError as exc:
            await self._dead_letter(entry_id, fields, deliveries, f"undecodable: {exc}")
            return
        if envelope.publish_by_ms is not None and added_ms(entry_id) > envelope.publish_by_ms:
            # Redis took the write after its publisher had given up on it and reported
            # it failed: acting on it now would do what the caller was told did not
            # happen.
            log.warning("bus.published_too_late", type=type(envelope.message).__name__,
                        late_ms=added_ms(entry_id) - envelope.publish_by_ms)  # fmt: skip
            await self._settle(entry_id, deliveries, envelope, None)
            return
        if envelope.deadline_ms is not None and self._bus.now_ms() > envelope.deadline_ms:
            log.info("bus.expired", type=type(envelope.message).__name__)
            await self._settle(entry_id, deliveries, envelope, None)
            return
        self._log.debug("bus.delivered", type=type(envelope.message).__name__,
                        deliveries=deliveries, corr=envelope.correlation_id)  # fmt: skip
        delivery = Delivery(
            entry_id.decode(),
            self.stream,
            deliveries,
            envelope.correlation_id,
            envelope.deadline_ms,
            envelope.reply_to,
        )
        if envelope.traceparent is not None:  # this task's own context: no reset needed
            trace_context.set(envelope.traceparent)
        try:
            reply = await self._handler(envelope.message, delivery)
        except asyncio.CancelledError:
            if envelope.reply_to is not None:
                failure = Failure(
                    kind="stopped", message=f"{self.group} stopped before it finished"
                )
                self._bus.in_order_soon(
                    self._reply_command(envelope, failure),
                    *self._ack_commands(entry_id, deliveries),
                )
            raise
        except Rejected as exc:  # it will never succeed: no retries
            await self._dead_letter(entry_id, fields, deliveries, f"rejected: {exc}")
            return
        except Exception as exc:
            if isinstance(exc, (*REDIS_DOWN, BusUnavailable)):
                self._bus.redis_errors["handler"] += 1  # an actor's own Redis call failed
            log.exception("bus.handler_failed", deliveries=deliveries)
            await self._remember_error(entry_id, exc)
            return
        if reply is DEFERRED:  # answered later, by whoever can
            reply = None
        elif reply is None and envelope.reply_to is not None:
            reply = Failure(kind="no_reply", message=f"{self.group} returned no reply")
        assert not isinstance(reply, Deferred)
        await self._settle(entry_id, deliveries, envelope, reply)

    async def _settle(
        self, entry_id: bytes, deliveries: int, envelope: Envelope, reply: Message | None
    ) -> None:
        """Send the reply (if asked) and acknowledge, in one round trip, in that order.

        A crash between the two only redelivers the entry, whose second reply the
        asker drops; an entry without an asker is acknowledged with the next write.
        """
        if envelope.reply_to is None or reply is None:
            self._log.debug("bus.acked")
            self._bus.writer.submit(*self._ack_commands(entry_id, deliveries))
            return
        self._log.debug("bus.replied", to=envelope.reply_to, type=type(reply).__name__)
        try:
            # The reply first, then the acknowledgement, in one round trip.
            await self._bus.in_order(
                self._reply_command(envelope, reply), *self._ack_commands(entry_id, deliveries)
            )
        except REDIS_DOWN as exc:
            self._bus.redis_errors["reply"] += 1
            # Not acknowledged: it will be delivered again (at-least-once).
            log.warning("bus.reply_failed", error=repr(exc))

    def _reply_command(self, envelope: Envelope, reply: Message) -> list[Any]:
        assert envelope.reply_to is not None
        fields = self._bus.codec.fields(reply, correlation_id=envelope.correlation_id)
        return xadd_command(envelope.reply_to, fields, self._bus.config.reply_max_len)

    def _ack_commands(self, entry_id: bytes, deliveries: int) -> list[list[Any]]:
        commands: list[list[Any]] = [["XACK", self.stream, self.group, entry_id]]
        if deliveries > 1:
            commands.append(["HDEL", self._errors_key, self._error_field(entry_id)])
        return commands

    def _error_field(self, entry_id: bytes) -> bytes:
        return self.group.encode() + b"/" + entry_id

    async def _remember_error(self, entry_id: bytes, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        self._bus.writer.submit(
            ["HSET", self._errors_key, self._error_field(entry_id), reason],
            ["PEXPIRE", self._errors_key, ERROR_TTL_MS],
        )

    async def _dead_letter(
        self, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int, reason: str
    ) -> None:
        """Move an entry to ``{ns}:dead`` with the reason, then acknowledge it.

        If Redis fails meanwhile, the entry stays pending and is dead-lettered again
        on its next claim.
        """
        bus = self._bus
        log.error("bus.dead_letter", entry_id=entry_id.decode(), reason=reason)
        dead = dict(fields)
        dead.update(
            {
                b"reason": reason.encode(),
                b"source_stream": self.stream.encode(),
                b"source_group": self.group.encode(),
                b"source_id": entry_id,
                b"deliveries": b"%d" % deliveries,
            }
        )
        commands = [xadd_command(bus.names.dead, dead, bus.config.dead_max_len)]
        reply_to, corr = fields.get(REPLY_TO), fields.get(CORR)
        if reply_to is not None and corr is not None:
            failure = Failure(kind="dead_letter", message=reason)
            answer = bus.codec.fields(failure, correlation_id=corr.decode(errors="replace"))
            commands.append(
                xadd_command(reply_to.decode(errors="replace"), answer, bus.config.reply_max_len)
            )
        commands.append(["XACK", self.stream, self.group, entry_id])
        commands.append(["HDEL", self._errors_key, self._error_field(entry_id)])
        bus.in_order_soon(*commands)

    async def prune(self) -> list[str]:
        """Delete this group's consumers idle for ``prune_idle_ms`` with nothing pending."""
        removed = await call(
            self._bus.scripts.prune,
            [self.stream],
            [self.group, self._bus.config.prune_idle_ms, self.consumer],
        )
        names = [r.decode() for r in removed]
        if names:
            self._log.info("bus.consumers_pruned", consumers=names)
        return names
