"""The limiter actor: rate limits per user over sliding windows, reserve then settle."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from bus import Bus

from ..messages import (
    AdmissionAsk,
    AdmissionVerdict,
    BurstDetected,
    RateLimitExceeded,
    limiter_stream,
)
from ._limiter_store import LimiterStore, RateVerdict
from ._quota_store import iso
from ._settlement import ReservingActor, reservation_of

__all__ = ["Limiter"]


class Limiter(ReservingActor[LimiterStore]):
    """Answers ``admission.ask`` on ``{ns}:limiter``; settles on ``request.completed``.

    Requests, tokens and cost per minute and per hour, and bursts; the state lives in
    Redis (``LimiterStore``), so every limiter process enforces the same limits. The
    first refusal of a user on a limit in a window goes out as ``rate-limit.exceeded``
    on ``{ns}:alerts``.
    """

    group: ClassVar[str] = "limiter"

    def __init__(
        self, bus: Bus, store: LimiterStore, *, concurrency: int, count_cache_hits: bool = True
    ) -> None:
        super().__init__(bus, limiter_stream(bus.names), store, concurrency=concurrency,
                         count_cache_hits=count_cache_hits)  # fmt: skip

    async def admit(self, ask: AdmissionAsk) -> AdmissionVerdict:
        verdict = await self.store.admit(ask.user_id, reservation_of(ask), ask.tokens, ask.cost_usd)
        if verdict.admitted:
            return AdmissionVerdict(admitted=True, limits=verdict.limits)
        if verdict.first_alert:
            self._alert(ask, verdict)
        wait = verdict.retry_after_s
        return AdmissionVerdict(
            admitted=False,
            kind="rate_limited",
            limit_type=verdict.limit_type,
            limit=verdict.limit,
            current=verdict.current,
            retry_after_s=wait,
            message=f"{verdict.limit_type}: {verdict.current:g} of {verdict.limit:g} used"
            + (f"; retry in {wait:.1f}s" if wait is not None else "; the request alone is over"),
            limits=verdict.limits,
        )

    def _alert(self, ask: AdmissionAsk, verdict: RateVerdict) -> None:
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
