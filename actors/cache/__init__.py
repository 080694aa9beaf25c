"""The cache actor: exact answers in this process's memory (L1) and in Redis (L2),
scoped per user unless shared, and coalescing of identical requests in flight."""

from ._key import entry_key, key_model, request_hash, scope_of
from ._memory import Memory
from ._store import CacheStore
from .cache import Cache

__all__ = ["Cache", "CacheStore", "Memory", "entry_key", "key_model", "request_hash", "scope_of"]
