"""L1: this process's memory of answers, bounded by entries and by bytes, with TTLs.

Hand-written over an ``OrderedDict`` rather than cachetools: it needs two bounds at once
(entries and bytes), a TTL per entry on the Redis clock, and drops by user or model on a
``cache.cleared`` event; cachetools' caches take one size bound and one TTL each.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from bus import Message

from ..messages import CacheCleared, CachedAnswer
from ._key import scope_of

__all__ = ["Memory"]


@dataclass(frozen=True, slots=True)
class _Held:
    answer: CachedAnswer
    expires_ms: int
    size: int
    scope: str
    model: str


class Memory:
    """Least recently used entries, at most ``max_entries`` and ``max_bytes``."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0  # since the last report (see ``take_evictions``)
        self._entries: OrderedDict[str, _Held] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now_ms: int) -> CachedAnswer | None:
        held = self._entries.get(key)
        if held is None:
            return None
        if held.expires_ms <= now_ms:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return held.answer

    def put(self, key: str, answer: CachedAnswer, expires_ms: int, scope: str, model: str) -> None:
        """Keep an answer (replacing one under the key); dropped at once if it alone
        is over a bound. Its size is its text's, in UTF-8 bytes."""
        size = len(answer.content.encode())
        if key in self._entries:
            self._drop(key)
        if size > self.max_bytes or self.max_entries == 0:
            return
        self._entries[key] = _Held(answer, expires_ms, size, scope, model)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    def take_evictions(self) -> int:
        """Evictions since the last call (to add to the shared count)."""
        count, self.evictions = self.evictions, 0
        return count

    def clear(self, scope: str | None = None, model: str | None = None) -> int:
        """Forget every entry, or those of one scope, or of one model; how many."""
        doomed = [
            key
            for key, held in self._entries.items()
            if (scope is None or held.scope == scope) and (model is None or held.model == model)
        ]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def on_event(self, message: Message) -> None:
        """Drop what was cleared anywhere (every process's memory follows the events)."""
        if isinstance(message, CacheCleared):
            self.clear(scope_of(message.user_id) if message.user_id else None, message.model)

    def _drop(self, key: str) -> None:
        held = self._entries.pop(key)
        self.bytes -= held.size
