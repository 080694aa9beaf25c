"""The quota keeper actor: monthly, daily and per-session quotas, reserve then settle."""

from __future__ import annotations

from typing import ClassVar

from bus import Bus

from ..messages import AdmissionAsk, QuotaExceeded, QuotaWarning, RequestFailure, quota_stream
from ._quota_store import QuotaStore, iso, period_of
from ._settlement import ReservingActor, reservation_of
from ._verdict import Verdict

__all__ = ["QuotaKeeper"]


class QuotaKeeper(ReservingActor[QuotaStore]):
    """Answers ``admission.ask`` on ``{ns}:quota``; settles on ``request.completed``.

    Requests, tokens and cost per calendar month, per calendar day and per session,
    per user (defaults from config, overrides kept in Redis). The first refusal on a
    quota in a period goes out as ``quota.exceeded``, crossing the warning share as
    ``quota.warning`` (once a period), both on ``{ns}:alerts``.
    """

    group: ClassVar[str] = "quota"
    refusal: ClassVar[RequestFailure] = "quota_exceeded"

    def __init__(
        self, bus: Bus, store: QuotaStore, *, concurrency: int, count_cache_hits: bool = True
    ) -> None:
        super().__init__(bus, quota_stream(bus.names), store, concurrency=concurrency,
                         count_cache_hits=count_cache_hits)  # fmt: skip

    async def reserve(self, ask: AdmissionAsk) -> Verdict:
        return await self.store.admit(
            ask.user_id,
            ask.session_id,
            reservation_of(ask),
            ask.tokens,
            ask.cost_usd,
            ask.mode,
            ask.tier,
        )

    def until(self, verdict: Verdict) -> str:
        resets_at = iso(verdict.resets_at_ms) if verdict.resets_at_ms else ""
        return f"; resets at {resets_at}" if resets_at else " in this session"

    def announce(self, ask: AdmissionAsk, verdict: Verdict) -> None:
        now = self.bus.now_ms()
        alerts = self.bus.names.alerts
        for name, limit, used in verdict.warnings:
            period = period_of(name)
            resets = self.store.resets_at(period, self.store.periods(now))
            self.bus.publish_soon(
                alerts,
                QuotaWarning(
                    user_id=ask.user_id, quota_type=name, limit=limit, current=used,
                    share=self.store.config.warning_share, period=period,
                    resets_at=iso(resets) if resets else "", request_id=ask.request_id,
                    ts=iso(now), session_id=ask.session_id,
                ),
            )  # fmt: skip
        if verdict.admitted or not verdict.first_alert:
            return
        resets_at = iso(verdict.resets_at_ms) if verdict.resets_at_ms else ""
        self.bus.publish_soon(
            alerts,
            QuotaExceeded(
                user_id=ask.user_id, quota_type=verdict.limit_type,
                limit=verdict.limit or 0.0, current=verdict.current or 0.0,
                period=verdict.period, resets_at=resets_at, request_id=ask.request_id,
                ts=iso(now), session_id=ask.session_id, rejections=verdict.rejections,
            ),
        )  # fmt: skip
