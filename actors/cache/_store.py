"""L2: the cache in Redis, shared by every process, and what coalescing keeps there.

==========================================  ========  ===============================
key                                         type      what
==========================================  ========  ===============================
``{ns}:cache:{<hash>}:<scope>``             string    an answer (JSON ``CachedAnswer``),
                                                      with its TTL
``{ns}:cache:{<hash>}:<scope>:lead``        string    the request that calls the
                                                      provider for this entry (a lease)
``{ns}:cache:{<hash>}:<scope>:waiting``     list      identical requests waiting for it
                                                      (reply stream, corr, id, deadline)
``{ns}:cache:index``                        zset      entry -> when it expires (ms)
``{ns}:cache:meta``                         hash      entry -> [bytes, scope, model]
``{ns}:cache:stats``                        hash      hits by level, misses, ... (counts)
``{ns}:cache:vectors``                      hash      entry -> its question's embedding and
                                                      what the semantic level matches
==========================================  ========  ===============================

``<hash>`` is the normalized request's (``_key.py``); an entry's keys share one Redis
Cluster slot. The index and meta (for stats and clearing by user or model) are written
beside the entry in the same round trip, not atomically with it: a crash between the
two leaves an entry that expires unlisted, never a listed entry that is wrong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from bus import Bus, lua_source

from ..messages import CachedAnswer
from ._key import SHARED

__all__ = ["CacheStore", "Found", "Vector", "Waiter"]

_encode = msgspec.json.encode
_decode_answer = msgspec.json.Decoder(CachedAnswer).decode
_decode_meta = msgspec.json.Decoder(tuple[int, str, str]).decode
_BATCH = 500


class Vector(msgspec.Struct, array_like=True, frozen=True):
    """An entry's question as the semantic level keeps it in Redis."""

    context: str
    scope: str
    model: str
    text: str
    expires_ms: int
    vector: bytes


_encode_vector = msgspec.msgpack.Encoder().encode
_decode_vector = msgspec.msgpack.Decoder(Vector).decode


@dataclass(frozen=True, slots=True)
class Found:
    """What Redis holds for a request: an answer (and how long it lasts), or that this
    request leads, or that another one leads (for ``lead_ms``), or nothing."""

    outcome: Literal["hit", "lead", "follow", "miss", "wait"]
    answer: CachedAnswer | None = None
    shared: bool = False  # the answer is the shared entry's
    ttl_ms: int = 0
    lead_ms: int = 0


@dataclass(frozen=True, slots=True)
class Waiter:
    """An identical request waiting for a leader's answer: where its reply goes, and
    until when it waits (its request's deadline: the lease if it comes to lead)."""

    reply_to: str
    corr: str
    request_id: str
    deadline_ms: int

    @classmethod
    def parse(cls, raw: bytes | str) -> Waiter:
        text = raw.decode() if isinstance(raw, bytes) else raw
        reply_to, corr, request_id, deadline = text.split(" ")
        return cls(reply_to, corr, request_id, int(deadline))

    def __str__(self) -> str:
        return f"{self.reply_to} {self.corr} {self.request_id} {self.deadline_ms}"


class CacheStore:
    """Answers in Redis with TTLs, the leases and waiters of coalescing, and counts."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        prefix = f"{bus.names.ns}:cache"
        self.index, self.meta, self.stats = f"{prefix}:index", f"{prefix}:meta", f"{prefix}:stats"
        self.vectors = f"{prefix}:vectors"
        self._prefix = prefix
        redis = bus.redis
        self._lookup = redis.register_script(lua_source("actors.cache", "cache_lookup"))
        self._follow = redis.register_script(lua_source("actors.cache", "cache_follow"))
        self._settle = redis.register_script(lua_source("actors.cache", "cache_settle"))

    def key(self, entry: str) -> str:
        """The Redis key of an entry (``<hash>:<scope>``)."""
        digest, _, scope = entry.partition(":")
        return f"{self._prefix}:{{{digest}}}:{scope}"

    def _keys(self, entry: str) -> list[str]:
        """The entry in its scope, the shared one, its lead and its waiters."""
        own = self.key(entry)
        shared = self.key(f"{entry.partition(':')[0]}:{SHARED}")
        return [own, shared, f"{own}:lead", f"{own}:waiting"]

    @staticmethod
    def _found(raw: list[Any]) -> Found:
        outcome = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        if outcome == "hit":
            return Found("hit", _decode_answer(raw[1]), shared=int(raw[2]) == 2,
                         ttl_ms=max(0, int(raw[3])))  # fmt: skip
        if outcome == "follow":
            return Found("follow", lead_ms=max(0, int(raw[1])))
        assert outcome in ("lead", "miss", "wait")
        return Found(outcome)  # type: ignore[arg-type]

    async def lookup(self, entry: str, request_id: str, lease_ms: int, coalesce: bool) -> Found:
        keys = self._keys(entry)[:3]
        raw = await self.bus.run_script(self._lookup, keys, [request_id, lease_ms, int(coalesce)])
        return self._found(raw)

    async def follow(self, entry: str, waiter: Waiter, lease_ms: int, wait_ms: int) -> Found:
        raw = await self.bus.run_script(
            self._follow, self._keys(entry), [waiter.request_id, lease_ms, str(waiter), wait_ms]
        )
        return self._found(raw)

    async def store(
        self, entry: str, request_id: str, answer: CachedAnswer, ttl_ms: int, scope: str,
        model: str, vector: Vector | None = None,
    ) -> list[Waiter]:  # fmt: skip
        """Keep an answer (and list it, with its question's vector if any); the waiters
        it answers."""
        value = _encode(answer)
        own, _shared, lead, waiting = self._keys(entry)
        expires = self.bus.now_ms() + ttl_ms
        raw = await self.bus.run_script(
            self._settle, [own, lead, waiting], [request_id, "store", value, ttl_ms, 0]
        )
        pipe = self.bus.redis.pipeline(transaction=False)
        pipe.zadd(self.index, {entry: expires})
        pipe.hset(self.meta, entry, _encode((len(value), scope, model)))
        if vector is not None:
            pipe.hset(self.vectors, entry, _encode_vector(vector))
        pipe.hincrby(self.stats, "stored", 1)
        await pipe.execute()
        return [Waiter.parse(w) for w in raw[1:]]

    async def fetch(self, entry: str) -> tuple[CachedAnswer, int] | None:
        """An entry's answer and the ms it has left, if it is still kept."""
        pipe = self.bus.redis.pipeline(transaction=False)
        pipe.get(self.key(entry))
        pipe.pttl(self.key(entry))
        value, ttl = await pipe.execute()
        if value is None or int(ttl) <= 0:
            return None
        return _decode_answer(value), int(ttl)

    async def vectors_kept(self) -> AsyncIterator[tuple[str, Vector]]:
        """Every stored question vector (to load an index at start)."""
        async for entry, raw in self.bus.redis.hscan_iter(self.vectors, count=_BATCH):
            try:
                yield bytes(entry).decode(), _decode_vector(raw)
            except (msgspec.DecodeError, UnicodeDecodeError):
                continue  # not ours to read: skipped

    async def release(
        self, entry: str, request_id: str, *, failed: bool
    ) -> tuple[str, list[Waiter]]:
        """A leader's request ended without an answer to keep: ``failed`` hands the lead
        to the oldest waiter still waiting (``promoted``, until its deadline), else every
        waiter goes its own way (``released``)."""
        own, _shared, lead, waiting = self._keys(entry)
        mode = "failed" if failed else "release"
        raw = await self.bus.run_script(self._settle, [own, lead, waiting], [request_id, mode])
        outcome = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        return outcome, [Waiter.parse(w) for w in raw[1:]]

    def count(self, **counts: int) -> None:
        """Add to the shared counts with this process's next write."""
        for name, value in counts.items():
            if value:
                self.bus.writer.submit(["HINCRBY", self.stats, name, value])

    async def prune(self) -> None:
        """Forget the listing of entries whose TTL has passed."""
        now = self.bus.now_ms()
        while True:
            gone = await self.bus.redis.zrangebyscore(self.index, "-inf", now, 0, _BATCH)
            if not gone:
                return
            pipe = self.bus.redis.pipeline(transaction=False)
            pipe.hdel(self.meta, *gone)
            pipe.hdel(self.vectors, *gone)
            pipe.zrem(self.index, *gone)
            await pipe.execute()

    async def totals(self) -> tuple[dict[str, int], int, int]:
        """The shared counts, and the entries listed and their bytes."""
        await self.prune()
        stats: Any = await self.bus.redis.hgetall(self.stats)
        counts = {bytes(k).decode(): int(v) for k, v in stats.items()}
        entries, size = 0, 0
        async for _entry, raw in self.bus.redis.hscan_iter(self.meta, count=_BATCH):
            entries += 1
            size += _decode_meta(raw)[0]
        return counts, entries, size

    async def clear(self, user_scope: str | None, model: str | None) -> int:
        """Forget entries: all, or one user scope's, or one model's; how many."""
        await self.prune()
        doomed: list[str] = []
        async for raw_entry, raw in self.bus.redis.hscan_iter(self.meta, count=_BATCH):
            _size, scope, entry_model = _decode_meta(raw)
            if (user_scope is None or scope == user_scope) and (
                model is None or entry_model == model
            ):
                doomed.append(raw_entry.decode())
        for start in range(0, len(doomed), _BATCH):
            batch = doomed[start : start + _BATCH]
            pipe = self.bus.redis.pipeline(transaction=False)
            pipe.delete(*(self.key(e) for e in batch))
            pipe.hdel(self.meta, *batch)
            pipe.hdel(self.vectors, *batch)
            pipe.zrem(self.index, *batch)
            await pipe.execute()
        return len(doomed)

    async def warm(
        self, entries: list[tuple[str, CachedAnswer, int, str, str, Vector | None]]
    ) -> None:
        """Store checked entries ``(entry, answer, ttl_ms, scope, model, vector)`` all
        at once: one MULTI, all or nothing, on one Redis server. On a cluster the
        entries live on several primaries, where no MULTI reaches: there a Redis failure
        midway may leave some stored (each whole, with its TTL), and the same batch
        sent again stores the rest."""
        now = self.bus.now_ms()
        pipe = self.bus.redis.pipeline(transaction=not self.bus.clustered)
        for entry, answer, ttl_ms, scope, model, vector in entries:
            value = _encode(answer)
            pipe.set(self.key(entry), value, px=ttl_ms)
            pipe.zadd(self.index, {entry: now + ttl_ms})
            pipe.hset(self.meta, entry, _encode((len(value), scope, model)))
            if vector is not None:
                pipe.hset(self.vectors, entry, _encode_vector(vector))
        pipe.hincrby(self.stats, "stored", len(entries))
        await pipe.execute()
