"""A provider deployment's own rate limits (what the provider grants its key or
resource), kept like a user's, in Redis and across processes: a call that would go
over is never made. The breaker takes a grant before each call and settles it after."""

from __future__ import annotations

import uuid

import msgspec

from bus import Bus

from ..runtime.config import LIMIT_FIELDS, LimitsConfig
from ._limiter_store import LimiterStore
from ._verdict import Verdict

__all__ = ["Grants"]


class Grants:
    """One deployment's requests and tokens per minute, reserved per call (its estimate)
    and settled to what the call used."""

    def __init__(
        self,
        bus: Bus,
        deployment: str,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
    ) -> None:
        self.deployment = deployment
        none = msgspec.convert(dict.fromkeys(LIMIT_FIELDS), LimitsConfig)
        limits = msgspec.structs.replace(  # no limit but the two granted
            none, requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute
        )
        self._store = LimiterStore(bus, limits, root="grants")

    async def take(self, tokens: int) -> tuple[str, Verdict]:
        """A call's grant: its id (to settle) and the verdict (refused: not to be made)."""
        call_id = uuid.uuid4().hex
        return call_id, await self._store.admit(self.deployment, call_id, tokens, 0.0)

    async def settle(self, call_id: str, tokens: int, *, made: bool = True) -> None:
        """What the call used (``made`` false: it was never made, nothing counts)."""
        await self._store.settle(self.deployment, call_id, tokens, 0.0, counted=made)

    async def headroom(self) -> float:
        """The share left of the tightest grant now, 0 to 1 (a check: changes nothing)."""
        verdict = await self._store.check_rate_limit(self.deployment)
        shares = [max(0.0, limit.remaining) / limit.limit for limit in verdict.limits
                  if limit.limit > 0]  # fmt: skip
        return min(shares, default=1.0)
