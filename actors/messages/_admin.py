"""Administration over the bus: commands to the actors that own the state, and their
reports. The HTTP admin API translates to these; any service on the bus may send them."""

from __future__ import annotations

from typing import Literal

import msgspec

from bus import Message

from ._request import UserId


class BreakerCommand(Message, tag="breaker.command", frozen=True, kw_only=True):
    """To a provider's breaker (``{ns}:calls:{provider}``): its state (``status``), or
    close it and clear a rejected key (``reset``), or force it open until the next
    reset (``open``). The reply is a ``breaker.report``; the breaker publishes the
    ``breaker.*`` event of a move."""

    action: Literal["status", "reset", "open"]


class BreakerReport(Message, tag="breaker.report", frozen=True, kw_only=True):
    """A provider's circuit breaker as it stands."""

    provider: str
    state: Literal["closed", "open", "half_open"]
    open_until_ms: int | None = None  # None while closed, or open until a reset
    key_invalid: bool = False
    forced_open: bool = False
    reason: str = ""


class LimitsCommand(Message, tag="limits.command", frozen=True, kw_only=True):
    """To the limiter (``{ns}:limiter``) or the quota keeper (``{ns}:quota``): a user's
    standing (``usage``; a session's too with ``session_id``), override some of its
    limits (``config``: ``changes`` maps limit names to a number or null, unlimited), or
    forget its usage (``reset``; overrides stay). The reply is a ``limits.report``, or
    an ``admin.refused`` naming what is wrong with the changes."""

    action: Literal["usage", "config", "reset"]
    user_id: UserId
    session_id: UserId | None = None
    changes: dict[str, float | None] = {}
    tier: str = ""  # the tier whose limits the user's report shows (its keys' tier)


class RateLimitRow(msgspec.Struct, frozen=True, kw_only=True):
    """One rate limit of a user: the limit, what the window holds, when it has room."""

    limit_type: str
    limit: float
    used: float
    remaining: float
    reset_s: float


class QuotaRow(msgspec.Struct, frozen=True, kw_only=True):
    """One quota of a user in its period: the limit (None: unlimited), what is used."""

    quota_type: str
    period: Literal["monthly", "daily", "per_session"]
    limit: float | None
    used: float
    remaining: float | None
    resets_at: str | None  # ISO 8601, UTC (None for a session)


class LimitsReport(Message, tag="limits.report", frozen=True, kw_only=True):
    """A user's rate limits (from the limiter) or quotas (from the quota keeper), and
    the limits that apply to it (``config``: its overrides over the defaults)."""

    user_id: str
    session_id: str | None = None
    tier: str = ""
    limits: list[RateLimitRow] = []
    quotas: list[QuotaRow] = []
    config: dict[str, float | None] = {}


class AdminRefused(Message, tag="admin.refused", frozen=True, kw_only=True):
    """The answer to a command that cannot be carried out as sent; nothing changed."""

    message: str
