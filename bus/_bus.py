"""The bus: publish, ask and subscribe over Redis Streams."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import socket
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import redis.exceptions
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from . import _asks
from ._aio import Backoff, WriteBatcher, cancel_and_wait
from ._cluster import ClusterTopology, ClusterWriter, cluster_client, command_key, is_cluster_url
from ._codec import Codec, Message, xadd_command
from ._config import BusConfig
from ._errors import (
    REDIS_DOWN,
    BusError,
    BusUnavailable,
    Stopped,
)
from ._inspect import DeadLetter, StreamInfo, dead_letters, inspect_streams
from ._keepalive import Keepalive
from ._line import Line, elsewhere
from ._names import Names
from ._replies import Replies
from ._scripts import Scripts, call
from ._subscription import Handler, Subscription
from ._tail import Tail, TailHandler

__all__ = ["Bus"]

log = structlog.get_logger("bus")

# How often a write that must not be lost is tried again while Redis is unreachable.
_RESEND_S = 0.25
# Error replies that say "not now" (a cluster failing over), not "never".
_NOT_YET = (redis.exceptions.ResponseError,)

# A clock sample whose round trip took longer is not trusted (its error is half that).
_CLOCK_MAX_RTT_S = 0.1


def _client(url: str, socket_timeout: float, connect_timeout: float) -> Redis:
    # No retries inside redis-py: a publish fails fast, a consumer has its own backoff.
    # RESP2 whatever redis-py's default: the hot path parses replies itself.
    return Redis.from_url(
        url,
        protocol=2,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class Bus:
    """A process's connection to the Redis Streams bus.

    ``start()`` connects, takes a stable process name (the consumer name in every
    group and the suffix of its reply stream) and starts listening for replies.
    """

    def __init__(
        self,
        redis_url: str,
        codec: Codec,
        config: BusConfig | None = None,
        *,
        node_prefix: str | None = None,
    ) -> None:
        self.config = config or BusConfig()
        self.codec = codec
        self.names = Names(self.config.namespace)
        cfg = self.config
        timeout, connect = cfg.command_timeout_ms / 1000, cfg.connect_timeout_ms / 1000
        # Blocking reads get their own connections, with a timeout longer than BLOCK.
        self._read_timeout = (cfg.block_ms + cfg.command_timeout_ms) / 1000
        self.blocking: Redis | None = None
        self.topology: ClusterTopology | None = None
        if not is_cluster_url(redis_url):
            self.redis = _client(redis_url, timeout, connect)
            self.blocking = _client(redis_url, self._read_timeout, connect)
            pool = self.redis.connection_pool
            self.writer = WriteBatcher(Line(lambda: pool))
        else:
            cluster = cluster_client(redis_url, timeout, connect)
            # The cluster client carries every command the actors send (each keyed
            # command to its slot's primary): typed as the plain client they use.
            self.redis = cast(Redis, cluster)
            self.topology = ClusterTopology(cluster, timeout, connect)
            self.writer = WriteBatcher(ClusterWriter(self.topology))
        self.scripts = Scripts(self.redis)
        prefix = node_prefix or socket.gethostname() or "node"
        self._node_prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix)
        self.node = ""
        self._lease_token = os.urandom(16).hex()
        self._replies = Replies(self)
        # Resolved once: a debug line on the hot path costs one no-op call when off.
        self._log = log.bind()
        self._clock_base = (0.0, 0.0)  # (redis seconds, local monotonic) at the last sync
        self._streams: set[str] = set()
        self._subscriptions: list[Subscription] = []
        self._tails: list[Tail] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._keepalive: Keepalive | None = None
        # Redis failures this process met, by where (publish, read, ask, handler, ...):
        # counted here, in the process, since Redis is what would have kept them.
        self.redis_errors: collections.Counter[str] = collections.Counter()
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self._url = redis_url
        self._started = False

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Connect, take a process name and listen for replies; raises ``BusUnavailable``."""
        try:
            await self.redis.ping()
            await self._sync_clock()
            await self._acquire_name()
            last: Any = await self.redis.xrevrange(self.reply_stream, count=1)
        except REDIS_DOWN as exc:
            await self._close_clients()
            raise BusUnavailable(f"Redis is unreachable: {exc}") from exc
        start_id: bytes = last[0][0] if last else b"0-0"
        self._keepalive = Keepalive(
            self._url, self.config, self.names.node_lease(self.node), self._lease_token,
            lambda: self._subscriptions,
        )  # fmt: skip
        self._keepalive.start()
        self._tasks = [
            asyncio.create_task(self._replies.listen(self.reply_stream, start_id), name="replies"),
            asyncio.create_task(self._maintain(), name="bus-maintenance"),
        ]
        self._started = True
        log.info("bus.started", node=self.node)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop subscriptions (draining for ``timeout`` s), fail pending asks, give the
        name back, close connections."""
        for sub in list(self._subscriptions):
            await sub.stop(timeout)
        for tail in self._tails:
            await tail.stop()
        self._tails = []
        for task in [*self._tasks, *self._background]:
            await cancel_and_wait(task)
        self._tasks = []
        self._background.clear()
        self._replies.fail_all(Stopped("the bus was closed before the reply came"))
        if self._keepalive is not None:
            await asyncio.to_thread(self._keepalive.stop)
            self._keepalive = None
        if self._started:
            with contextlib.suppress(*REDIS_DOWN):
                await self.writer.drain()
            await self.writer.close()
            with contextlib.suppress(*REDIS_DOWN):
                lease = [self.names.node_lease(self.node)]
                await call(self.scripts.release, lease, [self._lease_token])
        self._started = False
        await self._close_clients()

    async def _close_clients(self) -> None:
        await self.redis.aclose()
        if self.blocking is not None:
            await self.blocking.aclose()
        if self.topology is not None:
            await self.topology.aclose()

    def reader(self, stream: str) -> Line:
        """A connection of its own for blocking reads of ``stream`` (close it after)."""
        if self.topology is not None:
            return self.topology.reader(stream, self._read_timeout)
        assert self.blocking is not None
        pool = self.blocking.connection_pool
        return Line(lambda: pool)

    async def in_order(self, *commands: Sequence[Any]) -> list[Any]:
        """Run commands in this order, each only after the one before it ran, in one
        round trip on one server; on a cluster, one round trip per run of commands
        that go to the same primary (a reply is on the asker's node, the entry it
        answers on its stream's). Results as ``writer.execute`` gives them."""
        results: list[Any] = []
        steps = self._steps(commands)
        for number, step in enumerate(steps):
            results.extend(await self.writer.execute(*step))
            failed = next((r for r in results if isinstance(r, Exception)), None)
            if failed is not None and number < len(steps) - 1:
                # What follows must not run without it (an acknowledgement without its
                # reply): as if Redis had failed, so that the entry is delivered again.
                raise redis.exceptions.ConnectionError(f"a step failed, not sent on: {failed!r}")
        return results

    def in_order_soon(self, *commands: Sequence[Any]) -> None:
        """``in_order`` without waiting for it: sent with the next writes, a failure
        logged (on a cluster, a task sends the steps one after another)."""
        steps = self._steps(commands)
        if len(steps) == 1:
            self.writer.submit(*steps[0])
            return
        task = asyncio.get_running_loop().create_task(self._send_steps(steps))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_steps(self, steps: list[list[Sequence[Any]]]) -> None:
        try:
            for step in steps:
                failed = [r for r in await self.writer.execute(*step) if isinstance(r, Exception)]
                if failed:  # the steps after it must not run without it
                    log.warning("bus.write_failed", error=repr(failed[0]))
                    return
        except REDIS_DOWN as exc:
            log.warning("bus.write_failed", commands=sum(map(len, steps)), error=repr(exc))

    def _steps(self, commands: Sequence[Sequence[Any]]) -> list[list[Sequence[Any]]]:
        if self.topology is None:
            return [list(commands)]
        steps: list[list[Sequence[Any]]] = []
        last: tuple[str, int] | None = None
        for command in commands:
            address = self.topology.address(command_key(command))
            if address != last or not steps:
                steps.append([])
                last = address
            steps[-1].append(command)
        return steps

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def clustered(self) -> bool:
        """Whether Redis is a cluster (no MULTI across keys of different slots)."""
        return self.topology is not None

    @property
    def reply_stream(self) -> str:
        return self.names.reply(self.node or "unnamed")

    # -- clock -----------------------------------------------------------------

    async def _sync_clock(self) -> None:
        before = time.monotonic()
        seconds, micros = await self.redis.time()
        after = time.monotonic()
        if after - before > _CLOCK_MAX_RTT_S and self._clock_base[1]:
            return  # a stalled answer: keep the last good sample
        self._clock_base = (seconds + micros / 1e6, (before + after) / 2)

    def now_ms(self) -> int:
        """Milliseconds since the epoch on the Redis server's clock (immune to local skew)."""
        redis_at_sync, mono_at_sync = self._clock_base
        return int((redis_at_sync + time.monotonic() - mono_at_sync) * 1000)

    # -- process name ----------------------------------------------------------

    async def _acquire_name(self) -> None:
        # The lowest free {host}-{i}: a restarted process gets its old name back,
        # so consumer groups do not grow a consumer per restart.
        for index in range(10_000):
            name = f"{self._node_prefix}-{index}"
            if await self.redis.set(
                self.names.node_lease(name),
                self._lease_token,
                nx=True,
                px=self.config.node_lease_ms,
            ):
                self.node = name
                return
        raise RuntimeError("no free process name among 10,000 (lease keys never expire?)")

    # -- publish and ask -------------------------------------------------------

    async def publish(
        self, stream: str, message: Message, *, deadline_ms: int | None = None
    ) -> str:
        """Append ``message`` to ``stream``; returns the entry id or raises ``BusUnavailable``.

        Bounded by the connect and command timeouts: it fails fast when Redis is down.
        """
        return await self._append(stream, self.codec.fields(message, deadline_ms=deadline_ms))

    def publish_soon(self, stream: str, message: Message, *, keep_trying_s: float = 0) -> None:
        """Append ``message`` with this process's next write, without waiting for it.

        For events nobody waits on: it rides on the next batched round trip (often a
        reply's), and a failure is logged, not raised. With ``keep_trying_s``, a write
        that fails because Redis is unreachable is sent again (every quarter second,
        in this process) until it goes through or that time has passed: for events
        that settle what was charged. A write whose answer was lost may so land twice.
        """
        command = self._xadd(stream, self.codec.fields(message))
        if keep_trying_s <= 0:
            self.writer.submit(command)
            return
        give_up = asyncio.get_running_loop().time() + keep_trying_s
        self._submit_until(command, give_up)

    def _submit_until(self, command: list[Any], give_up: float) -> None:
        if not self._started:
            log.warning("bus.event_lost", stream=command[1], why="the bus was closed")
            return
        sent = self.writer.submit_watched(command)
        sent.add_done_callback(lambda done: self._sent_or_again(done, command, give_up))

    def _sent_or_again(
        self, done: asyncio.Future[list[Any]], command: list[Any], give_up: float
    ) -> None:
        failure = done.exception() if not done.cancelled() else None
        if failure is None and not done.cancelled():
            (result,) = done.result()
            if not isinstance(result, Exception):
                return
            if not elsewhere(result):  # Redis refused the command itself
                log.warning("bus.write_failed", error=repr(result))
                return
            failure = result  # a cluster between owners: as good as unreachable
        loop = asyncio.get_running_loop()
        if isinstance(failure, (*REDIS_DOWN, *_NOT_YET)) and loop.time() < give_up:
            self.redis_errors["publish"] += 1
            loop.call_later(_RESEND_S, self._submit_until, command, give_up)
        else:
            log.warning("bus.event_lost", stream=command[1], error=repr(failure))

    def _xadd(self, stream: str, fields: dict[bytes, bytes]) -> list[Any]:
        self._streams.add(stream)  # trimmed by this process from now on
        return xadd_command(stream, fields, self.config.stream(self.names.short(stream)).max_len)

    async def _append(self, stream: str, fields: dict[bytes, bytes]) -> str:
        try:
            (entry_id,) = await self.writer.execute(self._xadd(stream, fields))
        except REDIS_DOWN as exc:
            self.redis_errors["publish"] += 1
            raise BusUnavailable(f"could not publish to {stream}: {exc!r}") from exc
        if isinstance(entry_id, Exception):
            raise entry_id
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    @property
    def dropped_replies(self) -> int:
        """Replies that found nobody waiting (late, or duplicates)."""
        return self._replies.dropped

    async def ask(
        self, stream: str, message: Message, timeout: float, *, correlation_id: str | None = None
    ) -> Message:
        """Publish ``message`` and wait for its reply.

        Raises ``AskTimeout`` when no reply comes within ``timeout`` seconds (the
        consumer drops the entry once that deadline passes), ``RemoteError`` when the
        consumer answered with a failure, ``BusUnavailable`` when the message was not
        published and never will be (Redis could not be reached, or did not take the
        write in time: consumers drop an ask that Redis adds after its ``publish_by``).
        When the connection breaks after the write went out, whether Redis took it is
        unknown: the ask then waits for the reply as usual (an ``AskTimeout`` if none
        comes). ``correlation_id`` (default: a new random one) names the exchange.
        """
        asks = [(stream, message)]
        (answer,) = await self.ask_all(asks, timeout, correlation_ids=[correlation_id])
        if isinstance(answer, BusError):
            raise answer
        return answer

    async def ask_all(
        self,
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
        return await _asks.ask_all(self, asks, timeout, correlation_ids=correlation_ids)

    def ask_stream(
        self, stream: str, message: Message, timeout: float, *, correlation_id: str | None = None
    ) -> AsyncGenerator[Message, None]:
        """Publish ``message`` and yield its replies, in order, until the caller stops.

        The consumer sends any number of replies (``reply()`` with the delivery's
        correlation id) and its handler's return value last; the caller knows which
        message ends the exchange. The whole exchange is bounded by ``timeout``;
        failures to publish are raised as ``ask`` raises them.
        """
        return _asks.ask_stream(self, stream, message, timeout, correlation_id=correlation_id)

    async def reply(self, reply_to: str, correlation_id: str | None, *messages: Message) -> None:
        """Send replies of a (streaming, or deferred) ask, in order, in one round trip;
        raises ``BusUnavailable``."""
        commands = [
            xadd_command(reply_to, self.codec.fields(m, correlation_id=correlation_id),
                         self.config.reply_max_len)
            for m in messages
        ]  # fmt: skip
        try:
            results = await self.writer.execute(*commands)
        except REDIS_DOWN as exc:
            self.redis_errors["reply"] += 1
            raise BusUnavailable(f"could not reply on {reply_to}: {exc!r}") from exc
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def run_script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run a registered script in the next batched round trip (hot paths).

        Falls back to redis-py's own call (which loads the script) when Redis does not
        know it yet, after a restart for instance. Raises ``BusUnavailable``.
        """
        command = ["EVALSHA", script.sha, len(keys), *keys, *args]
        try:
            (result,) = await self.writer.execute(command)
            if isinstance(result, redis.exceptions.NoScriptError):
                # Load it once for every call that found it missing (after a restart,
                # a burst would otherwise load it once per call), then send each again,
                # in the order they came back.
                await self._load(script)
                (result,) = await self.writer.execute(command)
            if isinstance(result, redis.exceptions.ResponseError):
                raise result
        except REDIS_DOWN as exc:
            self.redis_errors["script"] += 1
            raise BusUnavailable(f"could not run a script: {exc!r}") from exc
        return result

    async def _load(self, script: AsyncScript) -> None:
        loading = self._loading.get(script.sha)
        if loading is None:
            loading = asyncio.ensure_future(self.redis.script_load(script.script))
            self._loading[script.sha] = loading
            loading.add_done_callback(lambda _f: self._loading.pop(script.sha, None))
        await asyncio.shield(loading)

    async def tail(self, stream: str, handler: TailHandler) -> Tail:
        """Hand every new entry of ``stream`` to ``handler`` in this process (no group)."""
        tail = Tail(self, stream, handler)
        await tail.start()
        self._tails.append(tail)
        return tail

    # -- subscribe -------------------------------------------------------------

    def subscribe(
        self,
        stream: str,
        group: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        start_id: str = "0",
    ) -> Subscription:
        """A consumer of ``stream`` in ``group``; call ``start()`` on it to consume.

        ``handler(message, delivery)`` returns the reply (or ``None``); the entry is
        acknowledged only after it returns. ``start_id`` is where a new group starts:
        ``"0"`` (everything the stream holds) or ``"$"`` (only new entries).
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._streams.add(stream)
        sub = Subscription(self, stream, group, handler, concurrency, start_id)
        self._subscriptions.append(sub)
        return sub

    def _forget(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(sub)

    def _backoff(self) -> Backoff:
        return Backoff(self.config.backoff_base_ms / 1000, self.config.backoff_max_ms / 1000)

    # -- maintenance -----------------------------------------------------------

    async def _maintain(self) -> None:
        """Resync the clock, keep the reply stream alive, trim (the keepalive thread
        renews the name lease)."""
        every = self.config.node_lease_ms / 3000
        next_trim = 0.0
        while True:
            await asyncio.sleep(every)
            try:
                await self._renew()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + self.config.trim_interval_ms / 1000
                    await self.trim()
            except REDIS_DOWN as exc:
                log.warning("bus.maintenance_unreachable", error=repr(exc))

    async def _renew(self) -> None:
        await self.redis.pexpire(self.reply_stream, self.config.reply_ttl_ms)
        await self._sync_clock()

    # -- a look at the bus -----------------------------------------------------

    async def inspect(self, streams: Sequence[str]) -> list[StreamInfo]:
        """Each of ``streams`` that exists: its length, and its groups' consumers,
        pending entries and lag."""
        return await inspect_streams(self.redis, streams)

    async def dead_letters(self, count: int = 10) -> tuple[int, list[DeadLetter]]:
        """How many entries ``{ns}:dead`` holds, and the latest ``count`` of them."""
        return await dead_letters(self.redis, self.names.dead, count)

    async def trim(self) -> None:
        """Trim every stream this process uses to its retention; prune idle consumers."""
        for stream in list(self._streams):
            retention = self.config.stream(self.names.short(stream)).retention_ms
            await call(self.scripts.trim, [stream], [retention])
        for sub in list(self._subscriptions):
            await sub.prune()
