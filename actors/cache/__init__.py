"""The cache actor: exact answers in this process's memory (L1) and in Redis (L2),
scoped per user unless shared, and coalescing of identical requests in flight."""

from ._exact import Exact
from ._guard import differences
from ._key import entry_key, key_model, request_hash, scope_of
from ._memory import Memory
from ._semantic import Embedder, LocalEmbedder, OpenAIEmbedder, VectorIndex, build_embedder
from ._similar import SemanticLevel
from ._store import CacheStore
from .cache import Cache

__all__ = [
    "Cache",
    "CacheStore",
    "Embedder",
    "Exact",
    "LocalEmbedder",
    "Memory",
    "OpenAIEmbedder",
    "SemanticLevel",
    "VectorIndex",
    "build_embedder",
    "differences",
    "entry_key",
    "key_model",
    "request_hash",
    "scope_of",
]
