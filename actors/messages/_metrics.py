"""The metrics actor's command and its answer: the deployment's numbers."""

from __future__ import annotations

from typing import Literal

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
