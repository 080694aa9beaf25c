"""Redis Cluster under the bus: which node holds a key, and the hot path's lines to it.

``REDIS_URL=redis+cluster://host:port`` (``rediss+cluster://`` with TLS) names any
node of a cluster; the rest are discovered. redis-py's ``RedisCluster`` carries every
ordinary command (it follows ``MOVED`` and refreshes its slot map itself). The hot
path (XADD, XACK, XREADGROUP, EVALSHA) bypasses redis-py's command layer on its own
``Line`` connections (see ``_line``); here each of those commands is sent to the
primary that holds its key's slot, from the same slot map, and sent again, once,
where a ``MOVED`` reply says the slot went (a failover). Every Lua script takes all
its keys in KEYS, in one slot: the keys of one user, one stream, one cache entry or
one provider share a hash tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.cluster
import redis.exceptions
from redis.asyncio import ConnectionPool
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot

from ._errors import NotSent
from ._line import Line, elsewhere

__all__ = [
    "CLUSTER_SCHEMES", "ClusterTopology", "ClusterWriter", "cluster_seeds", "command_key",
    "is_cluster_url",
    "sync_client",
]  # fmt: skip

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# A slot map is not refreshed more often than this (a burst of MOVED replies, or of
# failed connections to a dead primary, asks for one refresh, not one each).
_REFRESH_MIN_INTERVAL_S = 0.1

_ATTEMPTS = 6


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_seeds(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL as redis-py takes it: the ``redis://`` URL of its first node (its
    credentials, TLS and options for every node), and every node it names.

    ``redis+cluster://user:pass@10.0.0.5:6379,10.0.0.6:6379/?ssl_cert_reqs=none``:
    more nodes than one, comma-separated, let a process start while one of them is down.
    """
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not a cluster URL (redis+cluster:// or rediss+cluster://): {url!r}")
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a Redis Cluster has only database 0, not {parts.path.lstrip('/')!r}")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or host.endswith(":"):  # no port given (or a bare IPv6 address)
            host, port = item.strip(), "6379"
        if not host or not port.isdigit():
            raise ValueError(f"a cluster node must be host:port, not {item!r}")
        nodes.append((host.strip("[]"), int(port)))
    first = hosts.split(",")[0].strip()
    return urlunsplit((scheme, f"{userinfo}{at}{first}", "", parts.query, "")), nodes


def cluster_client(url: str, socket_timeout: float, connect_timeout: float) -> RedisCluster:
    """redis-py's cluster client for the ordinary (not hot-path) commands.

    It retries a command a few times on a moved slot, a refused connection or a
    cluster without an owner for a slot (a failover takes a second or two), with its
    slot map refreshed in between.
    """
    first, nodes = cluster_seeds(url)
    return RedisCluster.from_url(
        first,
        startup_nodes=[ClusterNode(host, port) for host, port in nodes[1:]],
        protocol=2,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 6),
        health_check_interval=0,
    )


def sync_client(url: str, **settings: Any) -> redis.Redis:
    """A blocking client for ``url``: one server, or (``redis+cluster://``) a cluster
    through redis-py's blocking ``RedisCluster`` (for threads, tools and tests)."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **settings)
    first, nodes = cluster_seeds(url)
    seeds = [redis.cluster.ClusterNode(host, port) for host, port in nodes[1:]]  # type: ignore[no-untyped-call]
    # The same commands as one server's client: typed as one, for its callers.
    cluster: redis.Redis = redis.cluster.RedisCluster.from_url(  # type: ignore[assignment]
        first, startup_nodes=seeds, **settings
    )
    return cluster


def command_key(command: Sequence[Any]) -> Any:
    """The key a hot-path command acts on (its slot says where it goes), or None."""
    name = command[0]
    if name in ("EVALSHA", "EVAL"):
        return command[3] if int(command[2]) > 0 else None
    return command[1] if len(command) > 1 else None


class ClusterTopology:
    """Where each slot is served, and one connection pool per primary and timeout."""

    def __init__(self, cluster: RedisCluster, socket_timeout: float, connect_timeout: float):
        self.cluster = cluster
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._pools: dict[tuple[str, int, float], ConnectionPool] = {}
        self._refreshing: asyncio.Future[None] | None = None
        self._refreshed_at = 0.0

    def address(self, key: Any) -> tuple[str, int]:
        """The primary that serves ``key``'s slot (any primary for no key)."""
        manager = self.cluster.nodes_manager
        if key is None:
            node = manager.default_node
        else:
            node = manager.get_node_from_slot(key_slot(_as_bytes(key)))
        return node.host, int(node.port)

    def pool(self, address: tuple[str, int], timeout: float | None = None) -> ConnectionPool:
        """A pool of connections to one node, with ``timeout`` (default: the command
        timeout) on reads."""
        timeout = self._socket_timeout if timeout is None else timeout
        found = self._pools.get((*address, timeout))
        if found is None:
            # The cluster client's connection settings (credentials, TLS), but only
            # those a connection takes (it also keeps the client's own there).
            settings = self.cluster.nodes_manager.connection_kwargs
            kind = settings.get("connection_class", Connection)
            accepted = _parameters(kind)
            kwargs = {k: v for k, v in settings.items() if k in accepted}
            kwargs.update(host=address[0], port=address[1], socket_timeout=timeout,
                          socket_connect_timeout=self._connect_timeout)  # fmt: skip
            found = ConnectionPool(connection_class=kind, **kwargs)
            self._pools[(*address, timeout)] = found
        return found

    def reader(self, key: str, timeout: float) -> Line:
        """A line for blocking reads of ``key``: it follows the key when its slot moves."""
        return Line(lambda: self.pool(self.address(key), timeout), on_moved=self.moved)

    async def moved(self, reply: Exception | None) -> None:
        """A reply said a slot moved (or a node is gone, with None): take the slot's new
        owner from a MOVED reply at once, and read the whole map again."""
        if isinstance(reply, redis.exceptions.MovedError):
            with contextlib.suppress(LookupError, redis.exceptions.RedisError):
                await self.cluster.nodes_manager.move_slot(reply)
        await self.refresh()

    async def refresh(self) -> None:
        """Read the slot map again (one refresh at a time, at most one per 100 ms)."""
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            return
        if time.monotonic() - self._refreshed_at < _REFRESH_MIN_INTERVAL_S:
            return
        self._refreshing = asyncio.ensure_future(self._initialize())
        try:
            await asyncio.shield(self._refreshing)
        finally:
            self._refreshing = None
            self._refreshed_at = time.monotonic()

    async def _initialize(self) -> None:
        # No node answered: the next failure asks again.
        with contextlib.suppress(
            redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError
        ):
            await self.cluster.nodes_manager.initialize()

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.disconnect()
        self._pools.clear()


class ClusterWriter:
    """The bus's write line on a cluster: each command goes to its key's primary.

    A batch is split by primary and sent to each at once, in one round trip each;
    the order of commands is kept on each primary, not across primaries (the bus
    sends in steps what must happen in order across keys: ``Bus.in_order``).
    A command answered ``MOVED`` (or ``TRYAGAIN``, ``CLUSTERDOWN``, ...) ran nowhere:
    it is sent again where the slot went, up to six times in all.
    """

    def __init__(self, topology: ClusterTopology) -> None:
        self._topology = topology
        self._lines: dict[tuple[str, int], Line] = {}

    def _line(self, address: tuple[str, int]) -> Line:
        line = self._lines.get(address)
        if line is None:
            pool = self._topology.pool(address)
            line = self._lines[address] = Line(lambda: pool)
        return line

    async def call(self, *args: Any) -> Any:
        result = (await self.call_many([args]))[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        results: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        for attempt in range(_ATTEMPTS):
            await self._send(commands, todo, results, first=attempt == 0)
            todo = [i for i in todo if elsewhere(results[i])]
            if not todo or attempt == _ATTEMPTS - 1:
                break
            for i in todo:
                await self._topology.moved(results[i])
            if not any(isinstance(results[i], redis.exceptions.MovedError) for i in todo):
                # No owner yet (a failover under way, about a second): up to 1.15 s in all.
                await asyncio.sleep(min(0.4, 0.05 * 2**attempt))
        return results

    async def _send(
        self, commands: Sequence[Sequence[Any]], todo: list[int], results: list[Any], *,
        first: bool,
    ) -> None:  # fmt: skip
        by_node: dict[tuple[str, int], list[int]] = {}
        for i in todo:
            by_node.setdefault(self._topology.address(command_key(commands[i])), []).append(i)
        sent = await asyncio.gather(
            *(self._line(address).call_many([commands[i] for i in indexes])
              for address, indexes in by_node.items()),
            return_exceptions=True,
        )  # fmt: skip
        failures = [r for r in sent if isinstance(r, BaseException)]
        if failures:
            await self._topology.moved(None)  # a primary is gone: a replica may take over
            nothing_sent = len(failures) == len(sent) and all(
                isinstance(f, NotSent) for f in failures
            )
            if first and nothing_sent:  # (a later attempt: the first's commands ran)
                raise failures[0]
            # Some commands may have run: the batch's outcome is unknown, not "not sent".
            raise redis.exceptions.ConnectionError(f"a cluster node failed: {failures[0]!r}")
        for (_address, indexes), replies in zip(by_node.items(), sent, strict=True):
            assert isinstance(replies, list)
            for i, reply in zip(indexes, replies, strict=True):
                results[i] = reply

    async def close(self) -> None:
        for line in self._lines.values():
            await line.close()
        self._lines.clear()


@functools.cache
def _parameters(kind: type) -> frozenset[str]:
    names: set[str] = set()
    for cls in kind.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return frozenset(names - {"self", "args", "kwargs", "retry"})


def _as_bytes(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()
