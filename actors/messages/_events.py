"""Facts on ``{ns}:events``: requests completed or cancelled, breakers moving."""

from __future__ import annotations

from typing import Literal

from bus import Message

from ..providers import Usage
from ._cache import CacheTicket
from ._request import Attempt


class RequestCompleted(Message, tag="request.completed", frozen=True, kw_only=True):
    """Published on ``{ns}:events`` for every request, answered or not."""

    request_id: str
    user_id: str
    session_id: str | None = None
    outcome: Literal["ok", "failed", "fallback"]
    provider: str = ""
    model: str = ""
    usage: Usage = Usage()
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempts: list[Attempt] = []
    cache_hit: bool = False
    stream: bool = False
    error_kind: str = ""
    ts_ms: int = 0
    reservation_id: str = ""  # the admission reservation to settle ("": the request id)
    charged: bool = False  # admission reserved nothing for it: nothing to settle
    limit_type: str = ""  # a refusal's limit or quota (rate_limited, quota_exceeded)
    cache_level: str = ""  # a hit's level
    # A miss the cache may store: where, and the answer to store (only with a ticket).
    cache_ticket: CacheTicket | None = None
    content: str = ""
    finish_reason: str = ""
    fallback_from: str = ""  # the model asked for, when a fallback model answered
    # A cache hit's: what the answer cost when it was made (its model's prices now),
    # and its tokens; what the hit saved.
    saved_usd: float = 0.0
    saved_tokens: int = 0


class RequestCancelled(Message, tag="request.cancelled", frozen=True, kw_only=True):
    """Published on ``{ns}:events`` when a request's caller went away before its answer
    (a client disconnected): whoever works on the exchange ``cancel_key`` (the
    correlation id of the caller's ask) stops, and its provider call is cancelled."""

    request_id: str
    cancel_key: str
    reason: str = ""
    ts_ms: int = 0


class BreakerOpened(Message, tag="breaker.opened", frozen=True, kw_only=True):
    """A provider's breaker opened: calls to it are refused until ``open_until_ms``
    (0: until an admin resets it, for a rejected key or a forced open)."""

    provider: str
    reason: str
    open_until_ms: int = 0
    failure_rate: float | None = None
    slow_call_rate: float | None = None
    calls: int = 0
    key_invalid: bool = False  # the provider rejected the key (401/403)
    forced: bool = False  # an operator forced it open
    ts_ms: int = 0


class BreakerHalfOpen(Message, tag="breaker.half_open", frozen=True, kw_only=True):
    """A provider's breaker lets a few trial calls through."""

    provider: str
    trials: int
    ts_ms: int = 0


class BreakerClosed(Message, tag="breaker.closed", frozen=True, kw_only=True):
    """A provider's breaker closed: its trials succeeded, or an admin reset it."""

    provider: str
    reason: str
    ts_ms: int = 0
