"""The exact level's keys and this process's memory of answers (L1), as one object: the
cache actor uses it, and the router of the same process asks it first, with no round
trip (an L1 hit then costs no cache ask at all)."""

from __future__ import annotations

from ..messages import CacheAnswer, CachedAnswer, CacheTicket, GenerateRequest
from ..providers import Catalog, UnknownModel
from ..runtime import CacheConfig
from ._key import SHARED, entry_key, key_model, request_hash, scope_of
from ._memory import Memory
from ._store import CacheStore

__all__ = ["Exact"]


class Exact:
    """Tickets (where a request's answer is kept, or why it is not) and L1 hits."""

    def __init__(
        self, memory: Memory, catalog: Catalog, config: CacheConfig, store: CacheStore
    ) -> None:
        self.memory = memory
        self.catalog = catalog
        self.config = config
        self.store = store

    def why_not(self, request: GenerateRequest) -> str:
        """Why a request is not to be cached ("" when it is)."""
        use = self.config.default if request.use_cache is None else request.use_cache
        if not use:
            return "use_cache is off"
        if request.embed:
            return "embeddings are not cached"
        if request.logprobs:
            return "logprobs are asked for (a cached answer has none)"
        if request.temperature is not None and request.temperature > self.config.max_temperature:
            return (f"temperature {request.temperature:g} is over cache.max_temperature "
                    f"{self.config.max_temperature:g}")  # fmt: skip
        return ""

    def ticket(self, request: GenerateRequest) -> CacheTicket | str:
        """Where the request's answer is kept, or why it is not cached."""
        why = self.why_not(request)
        if why:
            return why
        try:
            model = key_model(self.catalog, request.model)
        except UnknownModel as exc:
            return str(exc)
        shared = self.config.scope == "shared"
        digest = request_hash(request, model)
        ttl_s = self.config.model_ttl_s.get(model, self.config.ttl_s)
        return CacheTicket(
            key=entry_key(digest, SHARED if shared else scope_of(request.user_id)),
            ttl_ms=int(ttl_s * 1000),
            user_id="" if shared else request.user_id,
            model=model,
        )

    def remembered(self, key: str, now_ms: int) -> tuple[CachedAnswer, str] | None:
        """An answer in this process's memory, in the key's scope or shared."""
        shared = f"{key.partition(':')[0]}:{SHARED}"
        for candidate in (key, shared) if shared != key else (key,):
            answer = self.memory.get(candidate, now_ms)
            if answer is not None:
                return answer, candidate
        return None

    def hit(self, answer: CachedAnswer, level: str, entry: str) -> CacheAnswer:
        """A hit, counted."""
        self.store.count(**{f"hits_{level}": 1}, evictions=self.memory.take_evictions())
        return CacheAnswer(answer=answer, level=level, matched=entry)  # type: ignore[arg-type]

    def recall(self, request: GenerateRequest, now_ms: int) -> CacheAnswer | None:
        """An L1 hit for the request, or None (ask the cache actor)."""
        if not self.config.enabled:
            return None
        ticket = self.ticket(request)
        if isinstance(ticket, str):
            return None
        remembered = self.remembered(ticket.key, now_ms)
        if remembered is None:
            return None
        return self.hit(remembered[0], "l1", remembered[1])
