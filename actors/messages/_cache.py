"""The cache's messages: the router's lookup in the admission round trip, waiting for an
identical request in flight, the admin commands, and the entries they carry."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bus import Message

from ..providers import ChatMessage, MaxTokens, Stops, Temperature, TopP, Usage, check_conversation
from ._request import GenerateRequest, UserId

CacheLevel = Literal["l1", "l2", "semantic", "coalesced"]


class CachedAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """An answer as the cache keeps it: what the model said and who said it."""

    content: str
    provider: str
    model: str
    usage: Usage = Usage()  # as the provider counted it when the answer was made
    stored_at_ms: int = 0


class CacheTicket(msgspec.Struct, frozen=True, kw_only=True):
    """A miss the cache may store: the entry the answer goes under, and whether this
    request leads (identical requests in flight wait for its answer). The router hands
    it back in ``request.completed``."""

    key: str  # the entry: a hash of the normalized request, and its scope
    ttl_ms: int
    user_id: str  # whose entry ("": shared)
    model: str  # the model as the key names it
    lead: bool = False
    # For the semantic level: the hash of all but the last message, the last message
    # and its embedding (little-endian float32), when the request was embedded.
    context: str = ""
    text: str = ""
    vector: bytes = b""


class CacheLookup(Message, tag="cache.lookup", frozen=True, kw_only=True):
    """To the cache (``{ns}:cache``), with the limiter's and quota keeper's asks: is
    there an answer to this request? The reply is a ``cache.answer``."""

    request: GenerateRequest
    lease_ms: int = 60_000  # what is left of its deadline: how long it may lead


class CacheFollow(Message, tag="cache.follow", frozen=True, kw_only=True):
    """To the cache: wait for the identical request in flight under ``ticket``. The reply
    is a ``cache.answer``: its answer (``coalesced``), or this request leads now (the
    leader failed)."""

    request_id: str
    ticket: CacheTicket
    deadline_ms: int = 0  # the request's (Redis time): how long it waits, or leads


class CacheAnswer(Message, tag="cache.answer", frozen=True, kw_only=True):
    """The cache's reply: a hit (``answer`` and its ``level``), or a miss with the
    ``ticket`` to store the answer under (None: not to be cached), and ``follow`` when
    an identical request is in flight (wait for it with ``cache.follow``)."""

    answer: CachedAnswer | None = None
    level: CacheLevel | None = None
    similarity: float | None = None  # a semantic hit's
    matched: str = ""  # the entry a hit came from
    ticket: CacheTicket | None = None
    follow: bool = False
    lead_ms: int = 0  # with follow: how long the leader's lease still runs
    why: str = ""  # why a request is not cached (use_cache false, temperature, ...)


class WarmEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An answer to put in the cache ahead of time: the request it answers (``prompt``
    or ``messages``, ``model`` and any sampling settings) and the ``response``."""

    response: str
    model: str
    prompt: str | None = None
    messages: list[ChatMessage] = []
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    stop: Stops = []
    # Seconds (up to a year); None: the configured TTL for the model.
    ttl: Annotated[float, msgspec.Meta(gt=0, le=31_536_000)] | None = None
    shared: bool = False  # served to every user, else only to ``user_id``
    user_id: UserId = "anonymous"

    def __post_init__(self) -> None:
        check_conversation(self.prompt, self.messages, self.stop)

    def request(self) -> GenerateRequest:
        """The request this entry answers."""
        return GenerateRequest(
            request_id="warm", user_id=self.user_id, prompt=self.prompt, messages=self.messages,
            model=self.model, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens, stop=self.stop,
        )  # fmt: skip


class CacheCommand(Message, tag="cache.command", frozen=True, kw_only=True):
    """To the cache: its statistics (``stats``), forget entries (``clear``: all, or one
    user's with ``user_id``, or one model's with ``model``), or store ``entries``
    (``warm``). The reply is a ``cache.report`` or an ``admin.refused``."""

    action: Literal["stats", "clear", "warm"]
    user_id: UserId | None = None
    model: str | None = None
    entries: list[WarmEntry] = []


class CacheReport(Message, tag="cache.report", frozen=True, kw_only=True):
    """The cache's counts over every process, its entries, and what a command did."""

    hits: dict[str, int] = {}  # by level: l1, l2, semantic, coalesced
    misses: int = 0
    # Asked but not to be cached (temperature, a model unknown...); a request saying
    # use_cache: false is not asked at all.
    bypassed: int = 0
    hit_rate: float = 0.0
    entries: int = 0  # in Redis (L2), not yet expired
    bytes: int = 0
    l1_entries: int = 0  # in this process's memory
    l1_bytes: int = 0
    evictions: int = 0  # L1 entries dropped for room, in every process
    coalesced: int = 0  # requests that waited for an identical one instead of a call
    guard_refusals: int = 0  # semantic neighbours the guard refused (negation, numbers, ...)
    vectors: int = 0  # in this process's semantic index
    stored: int = 0
    cleared: int = 0  # entries this command removed
    warmed: int = 0  # entries this command stored


class CacheStored(Message, tag="cache.stored", frozen=True, kw_only=True):
    """Published on ``{ns}:events`` when an answer with an embedding was stored: every
    cache process adds it to its vector index."""

    entry: str
    context: str
    scope: str
    model: str
    text: str
    vector: bytes
    expires_ms: int


class CacheCleared(Message, tag="cache.cleared", frozen=True, kw_only=True):
    """Published on ``{ns}:events`` when entries were cleared: every cache process drops
    them from its memory (all, or one user's, or one model's)."""

    user_id: str | None = None
    model: str | None = None
    ts_ms: int = 0
