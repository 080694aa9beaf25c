"""The semantic level: embedders, and the in-memory vector index each cache process
searches (loaded from Redis at start, kept current from events).

The index is faiss's HNSW graph (``IndexHNSWFlat``, inner product on unit vectors). It
was measured against usearch and plain numpy on 100,000 vectors of 256 dimensions on
this machine (``benchmarks/cache.py`` has the search figures): faiss built the index
in 9.9 s and answered in 0.09 ms p50 (0.23 ms p99); usearch took 54 s to build and
0.63 ms p50; numpy's exact search 1.8 ms p50 and 9.6 ms p99. HNSW cannot delete: a
removed or expired entry is marked dead and skipped, and the graph is rebuilt (in a
thread) once half of it is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bus import Message

from ..messages import CacheCleared, CacheStored
from ..providers import ProvidersConfig
from ..runtime import SemanticConfig
from ._key import scope_of

if TYPE_CHECKING:
    import numpy as np
else:

    class _OnFirstUse:
        """numpy, imported when first used: only a deployment with the semantic cache on
        pays its import (0.12 s of every start otherwise)."""

        def __getattr__(self, name: str) -> Any:
            global np  # noqa: PLW0603 - the module itself replaces this stand-in
            np = importlib.import_module("numpy")
            return getattr(np, name)

    np = _OnFirstUse()

__all__ = [
    "Embedder",
    "LocalEmbedder",
    "Neighbour",
    "OpenAIEmbedder",
    "VectorIndex",
    "build_embedder",
    "vector_bytes",
    "vector_of",
]


class Embedder(Protocol):
    """Texts to unit vectors (float32, ``dimensions`` wide)."""

    dimensions: int

    async def embed(self, texts: list[str]) -> np.ndarray: ...

    async def close(self) -> None: ...


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: np.ndarray = vectors / norms
    return unit


def build_embedder(config: SemanticConfig, providers: ProvidersConfig) -> Embedder:
    """The configured embedder; ``ValueError`` when it cannot be built (no OpenAI key,
    the local extra not installed)."""
    if config.embedder == "local":
        try:
            return LocalEmbedder()
        except ImportError:
            raise ValueError(
                "cache.semantic.embedder = local needs the local-embeddings extra: "
                "pip install -e '.[local-embeddings]'"
            ) from None
    openai_config = providers.openai
    if not openai_config.enabled:
        raise ValueError("cache.semantic.embedder = openai needs the openai provider's key "
                         "(OPENAI_API_KEY)")  # fmt: skip
    return OpenAIEmbedder(str(openai_config.api_key), openai_config.base_url,
                          model=config.model, dimensions=config.dimensions,
                          timeout_s=config.timeout_ms / 1000)  # fmt: skip


class OpenAIEmbedder:
    """A provider's embeddings API through the OpenAI SDK (OpenAI, or any endpoint that
    speaks it): ``text-embedding-3-small`` shortened to ``dimensions``."""

    def __init__(
        self, api_key: str, base_url: str, *, model: str, dimensions: int, timeout_s: float
    ) -> None:
        self.dimensions = dimensions
        self.model = model
        # Imported here, as the provider adapters import their SDKs: only a deployment
        # with the semantic cache on pays for it (0.4 s of a start otherwise).
        import openai  # noqa: PLC0415

        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url or None, timeout=timeout_s, max_retries=0
        )

    async def embed(self, texts: list[str]) -> np.ndarray:
        result = await self._client.embeddings.create(
            model=self.model, input=texts, dimensions=self.dimensions
        )
        ordered = sorted(result.data, key=lambda d: d.index)
        return _unit(np.array([d.embedding for d in ordered], dtype=np.float32))

    async def close(self) -> None:
        await self._client.close()


class LocalEmbedder:
    """A small model in this process: WordLlama, whose weights ship inside its wheel
    (``pip install -e '.[local-embeddings]'``); nothing is downloaded. 256 dimensions;
    about 0.1 ms a text."""

    dimensions = 256

    def __init__(self) -> None:
        import wordllama  # noqa: PLC0415  (an optional extra: imported when chosen)

        package = Path(wordllama.__file__).parent
        # Its files are found in the package's own folders; downloads stay off.
        self._model = wordllama.WordLlama.load(cache_dir=package, disable_download=True)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return _unit(self._model.embed(texts))

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Neighbour:
    """An indexed entry near a query: how near, and what it is."""

    similarity: float
    entry: str  # the exact entry's key (``<hash>:<scope>``)
    context: str  # the hash of everything but the last message
    scope: str
    model: str
    text: str  # the last message, as asked
    expires_ms: int


# A group this small is searched exactly (one matrix product), not through the graph.
_EXACT_GROUP = 4_096


class VectorIndex:
    """Vectors of cached questions, searched by cosine similarity.

    Only entries of one group (the same model and earlier messages) may answer each
    other, so a search names its group: a group of up to 4,096 entries is searched
    exactly with numpy (it cannot be crowded out by the rest of the index); a larger
    one through the HNSW graph, asking for more neighbours the smaller its share.
    """

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._pending: list[Message] | None = None  # events while loading
        self._index = _graph(dimensions)
        self._vectors: list[np.ndarray] = []  # by label, for rebuilds
        self._meta: list[Neighbour | None] = []  # by label; None: removed
        self._labels: dict[str, int] = {}  # entry -> its live label
        self._groups: dict[str, set[int]] = {}  # group -> its live labels
        self._stacked: dict[str, tuple[np.ndarray, list[int]]] = {}  # exact-search cache
        self._rebuilding = False

    def __len__(self) -> int:
        return len(self._labels)

    @staticmethod
    def group_of(context: str, model: str) -> str:
        return f"{context}|{model}"

    def _append(self, vector: np.ndarray, meta: Neighbour) -> None:
        """Book a new label (the graph's add is the caller's)."""
        self._forget(meta.entry)
        label = len(self._meta)
        self._labels[meta.entry] = label
        self._meta.append(meta)
        self._vectors.append(vector)
        group = self.group_of(meta.context, meta.model)
        self._groups.setdefault(group, set()).add(label)
        self._stacked.pop(group, None)

    def add(self, vector: np.ndarray, meta: Neighbour) -> None:
        """Index an entry's vector (replacing the entry's older one)."""
        vector = np.asarray(vector, dtype=np.float32).reshape(1, self.dimensions)
        self._append(vector[0], meta)
        self._index.add(vector)

    def _forget(self, entry: str) -> None:
        label = self._labels.pop(entry, None)
        if label is None:
            return
        meta = self._meta[label]
        self._meta[label] = None
        if meta is not None:
            group = self.group_of(meta.context, meta.model)
            members = self._groups.get(group)
            if members is not None:
                members.discard(label)
                if not members:
                    del self._groups[group]
            self._stacked.pop(group, None)

    def remove(self, scope: str | None = None, model: str | None = None) -> int:
        """Forget entries: all, one scope's, one model's; how many."""
        doomed = [entry for entry, label in self._labels.items()
                  if (meta := self._meta[label]) is not None
                  and scope in (None, meta.scope) and model in (None, meta.model)]  # fmt: skip
        for entry in doomed:
            self._forget(entry)
        return len(doomed)

    def sweep(self, now_ms: int) -> int:
        """Forget every expired entry; how many."""
        doomed = []
        for entry, label in self._labels.items():
            meta = self._meta[label]
            if meta is not None and meta.expires_ms <= now_ms:
                doomed.append(entry)
        for entry in doomed:
            self._forget(entry)
        return len(doomed)

    def search(
        self, vector: np.ndarray, k: int, now_ms: int, group: str | None = None
    ) -> list[Neighbour]:
        """The live entries nearest to ``vector`` (of ``group``, if named), nearest
        first; expired ones are forgotten on the way."""
        query = np.asarray(vector, dtype=np.float32).reshape(self.dimensions)
        if group is not None:
            members = self._groups.get(group)
            if not members:
                return []
            if len(members) <= _EXACT_GROUP:
                return self._exact(query, k, now_ms, group)
        if not self._labels:
            return []
        share = len(self._groups.get(group, ())) / len(self._labels) if group else 1.0
        # Dead labels and other groups are skipped: ask the graph for more.
        dead = len(self._meta) - len(self._labels)
        wanted = min(len(self._meta), int(k / max(share, 0.01)) + min(dead, 4 * k))
        scores, labels = self._index.search(query.reshape(1, self.dimensions), wanted)
        return self._pick(zip(scores[0], labels[0], strict=True), k, now_ms, group)

    def _exact(self, query: np.ndarray, k: int, now_ms: int, group: str) -> list[Neighbour]:
        stacked = self._stacked.get(group)
        if stacked is None:
            labels = sorted(self._groups[group])
            stacked = (np.stack([self._vectors[label] for label in labels]), labels)
            self._stacked[group] = stacked
        matrix, labels = stacked
        scores = matrix @ query
        order = np.argsort(-scores)[: k + 8]
        return self._pick(((scores[i], labels[i]) for i in order), k, now_ms, group)

    def _pick(
        self, scored: Iterable[tuple[Any, Any]], k: int, now_ms: int, group: str | None
    ) -> list[Neighbour]:
        found = []
        for score, label in scored:
            if label < 0:
                continue
            meta = self._meta[label]
            if meta is None:
                continue
            if meta.expires_ms <= now_ms:
                self._forget(meta.entry)
                continue
            if group is not None and self.group_of(meta.context, meta.model) != group:
                continue
            found.append(Neighbour(float(score), meta.entry, meta.context, meta.scope,
                                   meta.model, meta.text, meta.expires_ms))  # fmt: skip
            if len(found) == k:
                break
        return found

    def on_event(self, message: Message) -> None:
        """Follow every process's stores and clears (from the node's tail of events)."""
        if self._pending is not None:
            self._pending.append(message)
        elif isinstance(message, CacheStored):
            vector = vector_of(message.vector, self.dimensions)
            if vector is not None:
                meta = Neighbour(0.0, message.entry, message.context, message.scope,
                                 message.model, message.text, message.expires_ms)  # fmt: skip
                self.add(vector, meta)
        elif isinstance(message, CacheCleared):
            self.remove(scope_of(message.user_id) if message.user_id else None, message.model)

    async def load(self, kept: AsyncIterator[tuple[str, Any]], now_ms: int) -> int:
        """Add the vectors kept in Redis (``CacheStore.vectors_kept``), in one batch in a
        thread; events meanwhile are applied after. How many were loaded (one that is
        not a vector of this width is skipped)."""
        self._pending = []
        metas: list[Neighbour] = []
        vectors: list[np.ndarray] = []
        try:
            async for entry, stored in kept:
                vector = vector_of(stored.vector, self.dimensions)
                if vector is None or stored.expires_ms <= now_ms:
                    continue
                metas.append(Neighbour(0.0, entry, stored.context, stored.scope, stored.model,
                                       stored.text, stored.expires_ms))  # fmt: skip
                vectors.append(vector)
            if vectors:
                await asyncio.to_thread(self._index.add, np.stack(vectors))
                for meta, vector in zip(metas, vectors, strict=True):
                    self._append(vector, meta)
        finally:
            pending, self._pending = self._pending, None
        for message in pending:
            self.on_event(message)
        return len(vectors)

    def dead_share(self) -> float:
        return 1 - len(self._labels) / len(self._meta) if self._meta else 0.0

    async def compact(self) -> None:
        """Rebuild the graph without its dead entries (in a thread), once half is dead;
        what changes meanwhile is carried over."""
        if self._rebuilding or self.dead_share() < 0.5 or len(self._meta) < 1_000:
            return
        self._rebuilding = True
        try:
            live = list(self._labels.items())
            fresh = _graph(self.dimensions)
            if live:
                matrix = np.stack([self._vectors[label] for _entry, label in live])
                await asyncio.to_thread(fresh.add, matrix)
            old_meta, old_vectors, current = self._meta, self._vectors, dict(self._labels)
            self._index, self._meta, self._vectors = fresh, [], []
            self._labels, self._groups, self._stacked = {}, {}, {}
            for entry, label in live:  # removed or replaced meanwhile: dead in the new one
                meta = old_meta[label] if current.get(entry) == label else None
                if meta is None:
                    self._meta.append(None)
                    self._vectors.append(old_vectors[label])
                else:
                    self._append(old_vectors[label], meta)
            for entry, label in current.items():  # added meanwhile
                if entry not in self._labels and (meta := old_meta[label]) is not None:
                    self.add(old_vectors[label], meta)
        finally:
            self._rebuilding = False


def _graph(dimensions: int) -> Any:
    import faiss  # noqa: PLC0415 - 0.15 s at import: only when the semantic cache is on

    graph = faiss.IndexHNSWFlat(dimensions, 32, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efSearch = 64
    return graph


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_of(raw: bytes, dimensions: int) -> np.ndarray | None:
    """A stored vector, or None when it is not one of this width."""
    with contextlib.suppress(ValueError):
        vector = np.frombuffer(raw, dtype="<f4")
        if vector.shape == (dimensions,):
            return vector
    return None
