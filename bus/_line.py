"""A redis.asyncio connection held for one job and spoken to at the protocol level.

redis-py's command layer (pool checkout, retry wrapper, response callbacks,
observability hooks) costs about as much CPU as the rest of a round trip; the hot
path of the bus (XADD, XACK, XREADGROUP, XREAD) skips it and uses a connection's own
``send_packed_command`` / ``read_response``, packs commands with hiredis (in C;
redis-py's asyncio packer is Python) and parses RESP2 replies here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions
from hiredis import pack_command  # RESP in C: redis-py's asyncio packer is Python
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection

from ._errors import NotSent

__all__ = ["Entries", "Line", "elsewhere", "parse_entries"]

Entries = list[tuple[bytes, dict[bytes, bytes]]]

# Error replies of a cluster node that no longer serves the key: the command ran
# nowhere (its slot moved, the cluster is between owners, the node turned replica
# under a blocked read); sent again to the slot's owner now, it runs once. (redis-py
# parses the first four into their classes, without the code in the message.)
_ELSEWHERE_ERRORS = (
    redis.exceptions.AskError,  # MovedError included
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ReadOnlyError,
)


def elsewhere(reply: object) -> bool:
    """Whether an error reply says the command ran nowhere (see ``_ELSEWHERE_ERRORS``)."""
    return isinstance(reply, _ELSEWHERE_ERRORS) or (
        isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith("UNBLOCKED")
    )


class Line:
    """One connection for one job (a reader, the writer), reconnected on demand.

    Any failure but a Redis error reply leaves the connection disconnected (redis-py
    does so when a read fails or is cancelled), so the next call starts on a fresh,
    in-sync connection.

    ``source`` gives the pool to take the connection from, asked again whenever the
    line has none: on a Redis Cluster, a line that reads one stream follows it to
    the node that serves it now. There, a ``MOVED`` reply (the command ran nowhere)
    drops the connection, runs ``on_moved`` (a refresh of the slot map) and is
    raised as a ``ConnectionError``, which callers already back off and retry on.
    """

    def __init__(
        self,
        source: Callable[[], ConnectionPool],
        on_moved: Callable[[Exception | None], Awaitable[None]] | None = None,
    ) -> None:
        self._source = source
        self._on_moved = on_moved
        self._pool: ConnectionPool | None = None
        self._conn: AbstractConnection | None = None

    async def _connection(self) -> AbstractConnection:
        """The connection, connected; ``NotSent`` when it cannot be (nothing went out)."""
        try:
            if self._conn is None:
                self._pool = self._source()
                self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            else:
                reader = getattr(self._conn, "_reader", None)
                if reader is not None and reader.at_eof():
                    # Redis closed it (it restarted or died) since the last call:
                    # reconnect now rather than write into a dead connection, after
                    # which nobody could tell whether the write was taken.
                    await self._conn.disconnect()
                if not self._conn.is_connected:
                    await self._conn.connect()  # type: ignore[no-untyped-call]
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            if self._on_moved is not None:  # a cluster node gone: its slots move
                await self.close()
                await self._on_moved(None)
            raise NotSent(f"could not connect to Redis: {exc}") from exc
        return self._conn

    async def call(self, *args: Any) -> Any:
        """One command; an error reply is raised as ``redis.exceptions.ResponseError``."""
        conn = await self._connection()
        await conn.send_packed_command(pack_command(args), check_health=False)
        try:
            return await conn.read_response()
        except redis.exceptions.ResponseError as exc:
            if self._on_moved is None or not elsewhere(exc):
                raise
            await self.close()
            await self._on_moved(exc)
            raise redis.exceptions.ConnectionError(f"the slot moved: {exc}") from exc

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one round trip; an error reply is returned in its place.

        One timer (the connection's socket timeout) bounds all the replies, not one
        timer each: past the first reply the rest are mostly buffered already.
        """
        conn = await self._connection()
        packed = b"".join([pack_command(tuple(command)) for command in commands])
        await conn.send_packed_command(packed, check_health=False)
        results: list[Any] = []
        try:
            async with asyncio.timeout(conn.socket_timeout):
                for _ in commands:
                    try:
                        results.append(await conn.read_response(timeout=math.inf))
                    except redis.exceptions.ResponseError as exc:
                        results.append(exc)
        except TimeoutError:
            await conn.disconnect(nowait=True)  # out of step with its replies now
            raise redis.exceptions.TimeoutError(
                f"no reply to {len(commands)} commands within {conn.socket_timeout} s"
            ) from None
        return results

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pool is not None:
            await conn.disconnect()
            await self._pool.release(conn)


def parse_entries(response: Any) -> Entries:
    """Entries of an XREAD / XREADGROUP reply (RESP2) for a single stream."""
    if not response:
        return []
    out: Entries = []
    for entry_id, flat in response[0][1]:
        if flat is None:  # an entry deleted while pending (only when reading history)
            continue
        out.append((entry_id, dict(zip(flat[::2], flat[1::2], strict=True))))
    return out
