"""Alerts on ``{ns}:alerts``: limits and quotas refusing, warning, bursts."""

from __future__ import annotations

from bus import Message


class QuotaExceeded(Message, tag="quota.exceeded", frozen=True, kw_only=True):
    """A request was refused for a quota; at most one per user, quota and period.

    ``rejections``: the refusals on that quota in the period so far (this one too).
    """

    user_id: str
    quota_type: str  # monthly_requests, daily_tokens, session_cost, ...
    limit: float
    current: float
    period: str  # monthly | daily | per_session
    resets_at: str  # ISO 8601, UTC ("" for a session: it ends when it idles out)
    request_id: str
    ts: str  # ISO 8601, UTC
    session_id: str | None = None
    rejections: int = 1


class QuotaWarning(Message, tag="quota.warning", frozen=True, kw_only=True):
    """A user crossed the warning share of a quota; once per quota and period."""

    user_id: str
    quota_type: str
    limit: float
    current: float
    share: float
    period: str
    resets_at: str
    request_id: str
    ts: str
    session_id: str | None = None


class RateLimitExceeded(Message, tag="rate-limit.exceeded", frozen=True, kw_only=True):
    """A request was refused for a rate limit; at most one per user, limit and window.

    ``rejections``: the refusals on that limit in the last day (this one too).
    """

    user_id: str
    limit_type: str  # requests_per_minute, tokens_per_hour, burst, ...
    limit: float
    current: float
    window_s: float
    retry_after_s: float | None
    request_id: str
    ts: str
    rejections: int = 1


class BurstDetected(Message, tag="burst.detected", frozen=True, kw_only=True):
    """A user sent more than ``limit`` requests within ``window_s``; the extra ones are
    refused (each also a ``rate-limit.exceeded`` with ``limit_type`` ``burst``). At most
    one per user and burst window."""

    user_id: str
    limit: float
    current: float
    window_s: float
    retry_after_s: float | None
    request_id: str
    ts: str
    rejections: int = 1
