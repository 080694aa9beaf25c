"""The cache actor: exact answers from memory (L1) and Redis (L2), and coalescing of
identical requests in flight."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import msgspec

from bus import DEFERRED, Bus, Deferred, Delivery, Message, Rejected

from ..messages import (
    AdminRefused,
    CacheAnswer,
    CacheCleared,
    CacheCommand,
    CachedAnswer,
    CacheFollow,
    CacheLookup,
    CacheReport,
    CacheStored,
    CacheTicket,
    GenerateRequest,
    RequestCompleted,
    cache_stream,
)
from ..providers import UnknownModel
from ..runtime import Actor, CacheConfig
from ._exact import Exact
from ._key import SHARED, context_hash, entry_key, key_model, request_hash, scope_of
from ._semantic import vector_bytes
from ._similar import SemanticLevel
from ._store import CacheStore, Found, Vector, Waiter

__all__ = ["Cache"]

_LEVELS = ("l1", "l2", "semantic", "coalesced")
_MAINTENANCE_S = 60.0


class Cache(Actor):
    """Answers ``cache.lookup`` and ``cache.follow`` on ``{ns}:cache``; stores answers
    from ``request.completed`` (its own group on ``{ns}:events``), off the request path.

    A lookup looks in this process's ``memory`` (L1), then Redis (L2; a hit there fills
    L1), first in the request's own scope (its user's, or ``shared`` when the cache
    is configured shared), then among shared entries. On a miss the request gets a
    ticket to store its answer under, and with coalescing the first request of a key
    leads: identical requests arriving while it runs are told to ``follow``, and wait
    (``cache.follow``) for its answer instead of calling the provider. If the leader
    fails, the oldest follower leads; if it vanishes, its lease runs out and the next
    follow leads.
    """

    group: ClassVar[str] = "cache"

    def __init__(
        self,
        bus: Bus,
        store: CacheStore,
        exact: Exact,
        config: CacheConfig,
        semantic: SemanticLevel | None = None,
    ) -> None:
        stream = cache_stream(bus.names)
        super().__init__(bus, stream=stream, also=(bus.names.events,),
                         concurrency=config.concurrency)  # fmt: skip
        self.store = store
        self.exact = exact
        self.memory = exact.memory
        self.catalog = exact.catalog
        self.config = config
        self.semantic = semantic

    async def on_start(self) -> None:
        self.spawn(self._maintain(), "cache-maintenance")

    async def _maintain(self) -> None:
        """Now and then: forget the listing of expired entries in Redis, and expired
        vectors in this process's index (rebuilt once half of it is dead)."""
        while True:
            await asyncio.sleep(_MAINTENANCE_S)
            try:
                await self.store.prune()
                if self.semantic is not None:
                    self.semantic.index.sweep(self.bus.now_ms())
                    await self.semantic.index.compact()
            except Exception as exc:  # Redis away: next time
                self.log.info("cache.maintenance_failed", error=repr(exc))

    async def handle(self, message: Message, delivery: Delivery) -> Message | Deferred | None:
        match message:
            case CacheLookup():
                answer = await self.lookup(message)
                if delivery.deadline_ms is not None and self.bus.now_ms() > delivery.deadline_ms:
                    await self._abandoned(message, answer)
                return answer
            case CacheFollow():
                return await self.follow(message, delivery)
            case RequestCompleted():
                if message.cache_ticket is not None:
                    await self.settle(message, message.cache_ticket)
                return None
            case CacheCommand():
                return await self.command(message)
            case _ if delivery.stream == self.bus.names.events:
                return None  # other events are not ours
            case _:
                raise Rejected(f"cache does not take {type(message).__name__}")

    # -- lookups ------------------------------------------------------------------

    async def _abandoned(self, ask: CacheLookup, answer: CacheAnswer) -> None:
        """The asker stopped waiting before this answer: a lead it took is handed on."""
        if answer.ticket is not None and answer.ticket.lead:
            await self._answer(*await self.store.release(
                answer.ticket.key, ask.request.request_id, failed=True), answer.ticket)  # fmt: skip

    async def _answer(
        self, outcome: str, waiters: list[Waiter], ticket: CacheTicket,
        hit: CacheAnswer | None = None,
    ) -> None:  # fmt: skip
        """Tell the waiters of an entry: the answer (``hit``), or that the oldest leads
        now (``promoted``), or that each goes its own way (``released``)."""
        if not waiters:
            return
        if hit is not None:
            reply = msgspec.structs.replace(hit, level="coalesced")
            self.store.count(coalesced=len(waiters))
        elif outcome == "promoted":
            reply = CacheAnswer(ticket=msgspec.structs.replace(ticket, lead=True))
        else:
            reply = CacheAnswer(why="the identical request's answer is not kept")
        sent = await asyncio.gather(
            *(self.bus.reply(w.reply_to, w.corr, reply) for w in waiters), return_exceptions=True
        )
        for failure in (r for r in sent if isinstance(r, Exception)):
            self.log.warning("cache.waiter_not_told", error=repr(failure))

    def _from_redis(self, ticket: CacheTicket, found: Found) -> CacheAnswer:
        assert found.answer is not None
        entry = f"{ticket.key.partition(':')[0]}:{SHARED}" if found.shared else ticket.key
        model = ticket.model
        scope = SHARED if found.shared else entry.partition(":")[2]
        if found.ttl_ms > 0:
            expires = self.bus.now_ms() + found.ttl_ms
            self.memory.put(entry, found.answer, expires, scope, model)
        return CacheAnswer(answer=found.answer, matched=entry)

    async def lookup(self, ask: CacheLookup) -> CacheAnswer:
        ticket = self.exact.ticket(ask.request)
        if isinstance(ticket, str):
            self.store.count(bypassed=1)
            return CacheAnswer(why=ticket)
        remembered = self.exact.remembered(ticket.key, self.bus.now_ms())
        if remembered is not None:
            return self.exact.hit(remembered[0], "l1", remembered[1])
        found = await self.store.lookup(ticket.key, ask.request.request_id,
                                        max(1, ask.lease_ms), self.config.coalesce)  # fmt: skip
        if found.outcome == "hit":
            hit = self._from_redis(ticket, found)
            return self.exact.hit(hit.answer, "l2", hit.matched)  # type: ignore[arg-type]
        if found.outcome == "follow":
            self.store.count(misses=1, evictions=self.memory.take_evictions())
            return CacheAnswer(ticket=ticket, follow=True, lead_ms=found.lead_ms)
        ticket = msgspec.structs.replace(ticket, lead=found.outcome == "lead")
        if self.semantic is not None:
            try:
                similar = await self._similar(ask.request, ticket)
            except Exception as exc:  # Redis, the index: a miss, never a failed request
                self.log.warning("cache.semantic_failed", error=repr(exc))
                similar = ticket
            if isinstance(similar, CacheAnswer):
                if ticket.lead:  # identical requests that came meanwhile get it too
                    outcome, waiters = await self.store.release(
                        ticket.key, ask.request.request_id, failed=False
                    )
                    await self._answer(outcome, waiters, ticket, similar)
                self.store.count(hits_semantic=1, evictions=self.memory.take_evictions())
                return similar
            ticket = similar
        self.store.count(misses=1, evictions=self.memory.take_evictions())
        return CacheAnswer(ticket=ticket)

    async def _similar(
        self, request: GenerateRequest, ticket: CacheTicket
    ) -> CacheAnswer | CacheTicket:
        """A semantic hit, or the ticket with what its answer is to be found by."""
        assert self.semantic is not None
        asked = context_hash(request, ticket.model)
        if asked is None or len(asked[1]) > self.semantic.config.max_chars:
            return ticket
        context, text = asked
        vector = await self.semantic.embed([text])
        if vector is None:
            return ticket
        ticket = msgspec.structs.replace(ticket, context=context, text=text,
                                         vector=vector_bytes(vector[0]))  # fmt: skip
        settings = self.semantic.config
        threshold = settings.threshold
        if request.cache_threshold is not None:  # more, or less down to the floor
            threshold = max(request.cache_threshold, settings.min_threshold)
        hit = await self.semantic.find(ticket, vector[0], threshold, self.bus.now_ms())
        return hit if hit is not None else ticket

    async def follow(self, ask: CacheFollow, delivery: Delivery) -> CacheAnswer | Deferred:
        ticket = ask.ticket
        remembered = self.exact.remembered(ticket.key, self.bus.now_ms())
        if remembered is not None:
            self.store.count(coalesced=1)
            return CacheAnswer(answer=remembered[0], level="coalesced", matched=remembered[1])
        if delivery.reply_to is None or delivery.correlation_id is None:
            raise Rejected("cache.follow is an ask: it needs reply_to and corr")
        now = self.bus.now_ms()
        deadline = ask.deadline_ms or delivery.deadline_ms or now
        waiter = Waiter(delivery.reply_to, delivery.correlation_id, ask.request_id, deadline)
        lease = max(1, deadline - now)  # if it leads: until its request's deadline
        found = await self.store.follow(ticket.key, waiter, lease, lease + 60_000)
        if found.outcome == "hit":
            self.store.count(coalesced=1)
            hit = self._from_redis(ticket, found)
            return msgspec.structs.replace(hit, level="coalesced")
        if found.outcome == "lead":
            return CacheAnswer(ticket=msgspec.structs.replace(ticket, lead=True))
        return DEFERRED  # the leader's completion answers it

    # -- storing ------------------------------------------------------------------

    def storable(self, done: RequestCompleted) -> bool:
        return (
            done.outcome == "ok"
            and not done.cache_hit
            and done.finish_reason == "stop"
            and bool(done.content)
            and len(done.content.encode()) <= self.config.max_entry_bytes
        )

    async def settle(self, done: RequestCompleted, ticket: CacheTicket) -> None:
        """Store a finished request's answer, or hand its lead on; answer its waiters."""
        if self.storable(done):
            answer = CachedAnswer(content=done.content, provider=done.provider, model=done.model,
                                  usage=done.usage, stored_at_ms=self.bus.now_ms())  # fmt: skip
            scope = ticket.key.partition(":")[2]
            vector = self._vector(ticket.key, ticket.context, ticket.text, ticket.vector, scope,
                                  ticket.model, ticket.ttl_ms)  # fmt: skip
            waiters = await self.store.store(ticket.key, done.request_id, answer, ticket.ttl_ms,
                                             scope, ticket.model, vector)  # fmt: skip
            self.memory.put(ticket.key, answer, self.bus.now_ms() + ticket.ttl_ms, scope,
                            ticket.model)  # fmt: skip
            hit = CacheAnswer(answer=answer, level="coalesced", matched=ticket.key)
            await self._answer("stored", waiters, ticket, hit)
        else:
            # A leader that failed (or fell back to the system's answer) hands the lead
            # to the oldest waiter; one whose answer is not kept lets each go its own way.
            failed = done.outcome in ("failed", "fallback")
            outcome, waiters = await self.store.release(ticket.key, done.request_id,
                                                        failed=failed)  # fmt: skip
            await self._answer(outcome, waiters, ticket)

    def _vector(
        self, entry: str, context: str, text: str, raw: bytes, scope: str, model: str,
        ttl_ms: int,
    ) -> Vector | None:  # fmt: skip
        """The entry's question vector to keep, announced to every process's index."""
        if not raw or self.semantic is None:
            return None
        vector = Vector(context=context, scope=scope, model=model, text=text,
                        expires_ms=self.bus.now_ms() + ttl_ms, vector=raw)  # fmt: skip
        stored = CacheStored(entry=entry, context=context, scope=scope, model=model, text=text,
                             vector=raw, expires_ms=vector.expires_ms)  # fmt: skip
        self.bus.publish_soon(self.bus.names.events, stored)
        return vector

    # -- administration -------------------------------------------------------------

    async def command(self, command: CacheCommand) -> Message:
        if command.action == "warm":
            return await self.warm(command)
        cleared = 0
        if command.action == "clear":
            scope = scope_of(command.user_id) if command.user_id else None
            model = command.model
            if model:
                try:
                    model = key_model(self.catalog, model)
                except UnknownModel as exc:
                    return AdminRefused(message=f"model: {exc}")
            cleared = await self.store.clear(scope, model)
            self.memory.clear(scope, model)
            event = CacheCleared(user_id=command.user_id, model=model, ts_ms=self.bus.now_ms())
            self.bus.publish_soon(self.bus.names.events, event)
        return await self.report(cleared=cleared)

    async def warm(self, command: CacheCommand) -> Message:
        """Store every entry, or none: an entry that is wrong is named, nothing stored."""
        checked = []
        now = self.bus.now_ms()
        for index, entry in enumerate(command.entries):
            try:
                model = key_model(self.catalog, entry.model)
            except UnknownModel as exc:
                return AdminRefused(message=f"entries[{index}].model: {exc}")
            request = entry.request()
            shared = entry.shared or self.config.scope == "shared"
            scope = SHARED if shared else scope_of(entry.user_id)
            ttl_s = entry.ttl or self.config.model_ttl_s.get(model, self.config.ttl_s)
            answer = CachedAnswer(content=entry.response, provider="warm", model=model,
                                  stored_at_ms=now)  # fmt: skip
            key = entry_key(request_hash(request, model), scope)
            checked.append((key, answer, int(ttl_s * 1000), scope, model, request))
        vectors = await self._warm_vectors([(c[0], c[3], c[4], c[2], c[5]) for c in checked])
        if isinstance(vectors, AdminRefused):
            return vectors
        await self.store.warm([(*c[:5], v) for c, v in zip(checked, vectors, strict=True)])
        for key, answer, ttl_ms, scope, model, _request in checked:
            self.memory.put(key, answer, now + ttl_ms, scope, model)
        return await self.report(warmed=len(checked))

    async def _warm_vectors(
        self, entries: list[tuple[str, str, str, int, GenerateRequest]]
    ) -> list[Vector | None] | AdminRefused:
        """The question vectors of warmed entries (embedded in one call), or a refusal
        when they could not be embedded (then nothing is stored)."""
        if self.semantic is None:
            return [None] * len(entries)
        asked = [context_hash(request, model) for _k, _s, model, _t, request in entries]
        texts = [a[1] for a in asked if a is not None]
        embedded = await self.semantic.embed(texts) if texts else None
        if texts and embedded is None:
            return AdminRefused(message="the entries' questions could not be embedded for "
                                "the semantic cache; nothing was stored")  # fmt: skip
        out: list[Vector | None] = []
        row = 0
        for (key, scope, model, ttl_ms, _request), context in zip(entries, asked, strict=True):
            if context is None or embedded is None:
                out.append(None)
                continue
            out.append(self._vector(key, context[0], context[1], vector_bytes(embedded[row]),
                                    scope, model, ttl_ms))  # fmt: skip
            row += 1
        return out

    async def report(self, *, cleared: int = 0, warmed: int = 0) -> CacheReport:
        self.store.count(evictions=self.memory.take_evictions())
        counts, entries, size = await self.store.totals()
        hits = {level: counts.get(f"hits_{level}", 0) for level in _LEVELS}
        looked = sum(hits.values()) - hits["coalesced"] + counts.get("misses", 0)
        return CacheReport(
            hits=hits,
            misses=counts.get("misses", 0),
            bypassed=counts.get("bypassed", 0),
            hit_rate=round((looked and (looked - counts.get("misses", 0)) / looked), 4),
            entries=entries,
            bytes=size,
            l1_entries=len(self.memory),
            l1_bytes=self.memory.bytes,
            evictions=counts.get("evictions", 0),
            coalesced=counts.get("coalesced", 0),
            guard_refusals=counts.get("guard_refusals", 0),
            vectors=len(self.semantic.index) if self.semantic is not None else 0,
            stored=counts.get("stored", 0),
            cleared=cleared,
            warmed=warmed,
        )
