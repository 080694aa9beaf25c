"""The semantic level: a question asked in other words gets the answer cached for it,
when nothing tells the two apart (the same model, parameters and earlier messages,
the same scope or a shared entry, a similarity over the threshold, and no difference
the guard sees)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from ..messages import CacheAnswer, CachedAnswer, CacheTicket
from ..runtime import SemanticConfig
from ._guard import differences
from ._key import SHARED
from ._memory import Memory
from ._semantic import Embedder, Neighbour, VectorIndex
from ._store import CacheStore

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SemanticLevel"]

log = structlog.get_logger("cache")


class SemanticLevel:
    """Embeds a question and finds the nearest cached one that may answer it."""

    def __init__(
        self,
        config: SemanticConfig,
        embedder: Embedder,
        index: VectorIndex,
        store: CacheStore,
        memory: Memory,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.index = index
        self.store = store
        self.memory = memory

    async def embed(self, texts: list[str]) -> np.ndarray | None:
        """Their vectors, or None when the embedder failed (logged: a miss, no error)."""
        try:
            async with asyncio.timeout(self.config.timeout_ms / 1000):
                return await self.embedder.embed(texts)
        except Exception as exc:
            log.warning("cache.embed_failed", error=repr(exc), texts=len(texts))
            return None

    def candidates(
        self, ticket: CacheTicket, vector: np.ndarray, threshold: float, now_ms: int
    ) -> tuple[list[Neighbour], int]:
        """Entries that may answer, nearest first, and how many the guard refused."""
        own = ticket.key.partition(":")[2]
        fit, refused = [], 0
        group = self.index.group_of(ticket.context, ticket.model)
        for near in self.index.search(vector, self.config.candidates, now_ms, group):
            if near.similarity < threshold:
                break
            if near.context != ticket.context or near.model != ticket.model:
                continue
            if near.scope not in (own, SHARED):
                continue
            if differences(ticket.text, near.text):
                refused += 1
                continue
            fit.append(near)
        return fit, refused

    async def find(
        self, ticket: CacheTicket, vector: np.ndarray, threshold: float, now_ms: int
    ) -> CacheAnswer | None:
        """The answer of the nearest entry that may answer, if its answer is still kept."""
        fit, refused = self.candidates(ticket, vector, threshold, now_ms)
        if refused:
            self.store.count(guard_refusals=refused)
        for near in fit:
            answer: CachedAnswer | None = self.memory.get(near.entry, now_ms)
            if answer is None:
                found = await self.store.fetch(near.entry)
                if found is None:
                    continue
                answer, ttl_ms = found
                self.memory.put(near.entry, answer, now_ms + ttl_ms, near.scope, near.model)
            similarity = round(near.similarity, 4)
            return CacheAnswer(answer=answer, level="semantic", similarity=similarity,
                               matched=near.entry)  # fmt: skip
        return None
