"""The limiter actor: rate limits per user over sliding windows, reserve then settle."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from bus import Bus

from ..messages import (
    AdmissionAsk,
    BurstDetected,
    RateLimitExceeded,
    RequestFailure,
    limiter_stream,
)
from ._limiter_store import LimiterStore
from ._quota_store import iso
from ._settlement import ReservingActor, reservation_of
from ._verdict import Verdict

__all__ = ["Limiter"]


class Limiter(ReservingActor[LimiterStore]):
    """Answers ``admission.ask`` on ``{ns}:limiter``; settles on ``request.completed``.

    Requests, tokens and cost per minute and per hour, and bursts; the state lives in
    Redis (``LimiterStore``), so every limiter process enforces the same limits. The
    first refusal of a user on a limit in a window goes out as ``rate-limit.exceeded``
    on ``{ns}:alerts``.
    """

    group: ClassVar[str] = "limiter"
    refusal: ClassVar[RequestFailure] = "rate_limited"

    def __init__(
        self, bus: Bus, store: LimiterStore, *, concurrency: int, count_cache_hits: bool = True
    ) -> None:
        super().__init__(bus, limiter_stream(bus.names), store, concurrency=concurrency,
                         count_cache_hits=count_cache_hits)  # fmt: skip

    async def reserve(self, ask: AdmissionAsk) -> Verdict:
        return await self.store.admit(ask.user_id, reservation_of(ask), ask.tokens, ask.cost_usd,
                                      ask.mode, ask.tier)  # fmt: skip

    def until(self, verdict: Verdict) -> str:
        wait = verdict.retry_after_s
        return f"; retry in {wait:.1f}s" if wait is not None else "; the request alone is over"

    def announce(self, ask: AdmissionAsk, verdict: Verdict) -> None:
        if verdict.admitted or not verdict.first_alert:
            return
        alert = RateLimitExceeded(
            user_id=ask.user_id,
            limit_type=verdict.limit_type,
            limit=verdict.limit or 0.0,
            current=verdict.current or 0.0,
            window_s=verdict.window_s or 0.0,
            retry_after_s=verdict.retry_after_s,
            request_id=ask.request_id,
            ts=iso(self.bus.now_ms()),
            rejections=verdict.rejections,
        )
        self.bus.publish_soon(self.bus.names.alerts, alert)
        if verdict.limit_type == "burst":
            fields = msgspec.structs.asdict(alert)
            del fields["limit_type"]
            self.bus.publish_soon(self.bus.names.alerts, BurstDetected(**fields))
