"""Exact rate limits and quotas: the limiter and the quota keeper actors, their
reservation stores (one Lua script per atomic step) and how a request settles."""

from ._grants import Grants
from ._limiter_store import LimiterStore
from ._quota_store import QuotaStore
from ._settlement import ReservingActor, settlement
from .limiter import Limiter
from .quota_keeper import QuotaKeeper

__all__ = [
    "Grants",
    "Limiter",
    "LimiterStore",
    "QuotaKeeper",
    "QuotaStore",
    "ReservingActor",
    "settlement",
]
