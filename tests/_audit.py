"""The secrets audit: the whole suite runs with the product's logging at debug level
(ours and every library's, through its redaction), and no secret a test gives the
system (provider keys, admin tokens, client keys: each contains ``SECRET_MARK``)
may show up in a log line, a Redis key or value, or an HTTP response a test reads.

A test that leaks fails in its teardown, naming where the secret was seen.
"""

from __future__ import annotations

import sys
from typing import Any

import redis
import redis.asyncio

__all__ = ["AUDIT", "SECRET_MARK", "secret"]

SECRET_MARK = "n0tpublic"


def secret(name: str) -> str:
    """A secret for a test to give the system: one the audit knows."""
    return f"{name}-{SECRET_MARK}"


class Audit:
    def __init__(self) -> None:
        self.found: list[str] = []

    def scan(self, where: str, data: str | bytes) -> None:
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        at = text.find(SECRET_MARK)
        if at >= 0:
            self.found.append(f"{where}: ...{text[max(0, at - 80) : at + 40]!r}...")

    def take(self) -> list[str]:
        found, self.found = self.found, []
        return found

    def scan_redis_values(self, ns: str, kind: bytes, key: bytes, value: Any) -> None:
        where = f"Redis {kind.decode()} {key.decode(errors='replace')}"
        self.scan(where, key)
        self.scan(where, repr(value))


AUDIT = Audit()


class LogSink:
    """Where the product's log lines go in the suite: scanned, then passed on to
    whatever stdout is now (pytest's capture, shown when a test fails)."""

    def write(self, line: str) -> int:
        AUDIT.scan("a log line", line)
        return sys.stdout.write(line)

    def flush(self) -> None:
        sys.stdout.flush()


_READERS = {
    b"stream": lambda c, k: c.xrange(k),
    b"hash": lambda c, k: c.hgetall(k),
    b"string": lambda c, k: c.get(k),
    b"zset": lambda c, k: c.zrange(k, 0, -1, withscores=True),
    b"set": lambda c, k: c.smembers(k),
    b"list": lambda c, k: c.lrange(k, 0, -1),
}


def scan_namespace(client: redis.Redis, ns: str) -> list[bytes]:
    """Scan every key of ``ns`` for secrets; its keys (to delete)."""
    keys = sorted(set(client.scan_iter(match=f"{ns}:*", count=1000)))
    for key in keys:
        kind = client.type(key)
        reader = _READERS.get(kind)
        if reader is not None:
            AUDIT.scan_redis_values(ns, kind, key, reader(client, key))
    return keys


async def scan_namespace_async(client: redis.asyncio.Redis, ns: str) -> list[bytes]:
    keys = sorted({k async for k in client.scan_iter(match=f"{ns}:*", count=1000)})
    for key in keys:
        kind = await client.type(key)
        reader = _READERS.get(kind)
        if reader is not None:
            AUDIT.scan_redis_values(ns, kind, key, await reader(client, key))
    return keys
