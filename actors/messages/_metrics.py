"""The metrics actor's command and its answer: the deployment's numbers."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bus import Message


class MetricsCommand(Message, tag="metrics.command", frozen=True, kw_only=True):
    """To the metrics actors (``{ns}:metrics``): the numbers as they stand
    (``snapshot``), or start them over (``reset``). The reply is a ``metrics.snapshot``."""

    action: Literal["snapshot", "reset"] = "snapshot"


class UserUsage(msgspec.Struct, frozen=True, kw_only=True):
    """What one user used in a period."""

    user_id: str
    requests: int
    tokens: int
    cost_usd: float


class PeriodUsage(msgspec.Struct, frozen=True, kw_only=True):
    """What every user used in the current day or month (the quotas' time zone), as
    the quotas count it, and the users who used the most tokens."""

    period: Literal["daily", "monthly"]
    label: str  # 2026-11-28, 2026-11
    requests: int
    tokens: int
    cost_usd: float
    users: int
    top_users: list[UserUsage] = []


class MetricsSnapshot(Message, tag="metrics.snapshot", frozen=True, kw_only=True):
    """Every series the metrics actors keep for the deployment: ``series`` maps
    ``kind|name|labels (JSON)|bucket`` to its value (see ``actors.metrics``), and the
    streams' pending entries per group."""

    series: dict[str, float] = msgspec.field(default_factory=dict)
    pending: dict[str, int] = msgspec.field(default_factory=dict)  # "stream|group" -> count
    dead_letters: int = 0
    taken_at_ms: int = 0
    usage: list[PeriodUsage] = []  # this day's and this month's


class TimelineQuery(Message, tag="metrics.timeline", frozen=True, kw_only=True):
    """To the metrics actors (``{ns}:metrics``): the deployment's traffic over the last
    ``minutes``, in steps of ten seconds. The reply is a ``metrics.timeline_report``."""

    minutes: Annotated[int, msgspec.Meta(ge=1, le=60)] = 60


class TimelinePoint(msgspec.Struct, frozen=True, kw_only=True):
    """One step of the timeline: the requests that ended in it."""

    t: int  # the step's start, in seconds since the epoch (Redis's clock)
    requests: int = 0  # every request that ended, refused ones too
    errors: int = 0  # failed, not for a limit or quota
    rejected: int = 0  # refused for a rate limit or quota
    cache_hits: int = 0
    cost_usd: float = 0.0
    p50_ms: float | None = None  # of the durations of requests not refused (None: none)
    p95_ms: float | None = None


class ProviderRecent(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's calls over the last minutes (not since the numbers began)."""

    provider: str
    calls: int  # that ended, answered or failed (a hedge's cancelled call is neither)
    errors: int
    error_rate: float
    p50_ms: float | None = None
    p95_ms: float | None = None


class TimelineReport(Message, tag="metrics.timeline_report", frozen=True, kw_only=True):
    """The answer to ``metrics.timeline``: every step of the window, oldest first,
    empty ones too; and each provider's calls over the last ``recent_s`` seconds."""

    step_s: int
    points: list[TimelinePoint] = []
    now_ms: int = 0  # when it was read (Redis's clock): how far the last step has run
    recent_s: int = 0
    providers: list[ProviderRecent] = []


UsersSort = Literal["cost", "tokens", "requests", "rejections"]


class UsersQuery(Message, tag="metrics.users", frozen=True, kw_only=True):
    """To the metrics actors: one page of the users of this day or month, by ``sort``
    (most first). The reply is a ``metrics.users_page``."""

    period: Literal["daily", "monthly"] = "daily"
    sort: UsersSort = "cost"
    offset: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20


class UserStanding(msgspec.Struct, frozen=True, kw_only=True):
    """What one user used in a period, and how often it was refused."""

    user_id: str
    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    rejections: int = 0  # requests refused for a rate limit or quota


class UsersPage(Message, tag="metrics.users_page", frozen=True, kw_only=True):
    """The answer to ``metrics.users``: ``total`` users in the period, and the page."""

    period: Literal["daily", "monthly"]
    label: str  # 2026-11-29, 2026-11
    sort: UsersSort
    offset: int
    limit: int
    total: int
    users: list[UserStanding] = []
