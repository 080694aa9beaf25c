"""Rate limits in Redis: the limiter's Python face over ``lua/limiter_*.lua``.

Key layout (all of one user's keys in one Cluster slot, ``{u}``):

- ``{ns}:limits:{u}:config``  hash: the user's overrides ("null": unlimited; costs in
  nano-dollars)
- ``{ns}:limits:{u}:requests`` zset: admitted request ids by admission time (ms)
- ``{ns}:limits:{u}:tokens``, ``...:cost`` hash: ``s<second>`` and ``m<minute>`` buckets
- ``{ns}:limits:{u}:reservations`` hash: request id -> "at_ms tokens cost"
- ``{ns}:limits:{u}:expiring`` zset: request id -> when its reservation is forgotten
- ``{ns}:limits:{u}:alerts`` hash: rejections and the windows already alerted
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from bus import Bus, lua_source

from ..messages import LimitsReport, LimitState, RateLimitRow
from ..runtime.config import LIMIT_FIELDS, LimitsConfig
from ._amounts import check_usage, from_redis, lua_defaults, nano, shown, to_redis
from ._keys import LimiterKeys, limits_key
from ._verdict import Verdict

__all__ = ["LimiterStore"]


class _Answer(msgspec.Struct):
    verdict: str
    limits: list[list[Any]] | dict[str, Any] = []
    limit_type: str = ""
    limit: float = 0
    current: float = 0
    window_ms: float = 0
    retry_after_ms: float = 0
    first: int = 0
    rejections: int = 0


_decode = msgspec.json.Decoder(_Answer).decode


class LimiterStore:
    """Sliding-window rate limits per user, reserved then settled, in Redis."""

    fields: tuple[str, ...] = LIMIT_FIELDS

    def __init__(
        self,
        bus: Bus,
        config: LimitsConfig,
        tiers: Mapping[str, LimitsConfig] | None = None,
        root: str = "limits",
    ) -> None:
        self.bus = bus
        self.root = root  # the keys' part after the namespace ("grants": deployments')
        self.config = config
        self.admit_script = bus.redis.register_script(lua_source("actors.limits", "limiter_admit"))
        self._settle = bus.redis.register_script(lua_source("actors.limits", "limiter_settle"))
        self._defaults = lua_defaults(config, LIMIT_FIELDS)
        # A tier's limits replace the defaults for its users (their own overrides win).
        self._tiers = {name: lua_defaults(t, LIMIT_FIELDS) for name, t in (tiers or {}).items()}
        self._tier_configs = dict(tiers or {})

    def _keys(self, user_id: str) -> LimiterKeys:
        return LimiterKeys.of(self.bus.names, user_id, self.root)

    def admit_args(
        self, user_id: str, request_id: str, tokens: int, cost_usd: float, mode: str = "reserve",
        tier: str = "",
    ) -> tuple[list[str], list[Any]]:  # fmt: skip
        """The keys and arguments of ``admit_script`` for one admission."""
        check_usage(tokens, cost_usd)
        defaults = self._tiers.get(tier, self._defaults)
        args = [request_id, tokens, nano(cost_usd, up=True), mode,
                self.config.reservation_ttl_ms, *defaults]  # fmt: skip
        return list(self._keys(user_id)), args

    async def admit(
        self, user_id: str, request_id: str, tokens: int, cost_usd: float, mode: str = "reserve",
        tier: str = "",
    ) -> Verdict:  # fmt: skip
        """Reserve (``reserve``), charge for good (``record``) or only ``check``, with the
        limits of the user's ``tier``."""
        keys, args = self.admit_args(user_id, request_id, tokens, cost_usd, mode, tier)
        raw = await self.bus.run_script(self.admit_script, keys, args)  # BusUnavailable
        answer = _decode(raw)
        limits = [
            LimitState(
                name=str(name),
                limit=shown(str(name), float(limit)),
                remaining=shown(str(name), max(0.0, float(limit) - float(current))),
                reset_s=round(float(reset) / 1000, 3),
            )
            for name, limit, current, _window, reset in (
                answer.limits if isinstance(answer.limits, list) else []
            )
        ]
        if answer.verdict in ("ok", "dup"):
            return Verdict(admitted=True, duplicate=answer.verdict == "dup", limits=limits)
        name = answer.limit_type
        return Verdict(
            admitted=False,
            limit_type=name,
            limit=shown(name, answer.limit),
            current=shown(name, answer.current),
            window_s=answer.window_ms / 1000,
            retry_after_s=None if answer.retry_after_ms < 0 else answer.retry_after_ms / 1000,
            first_alert=answer.first == 1,
            rejections=answer.rejections,
            limits=limits,
        )

    async def check_rate_limit(
        self, user_id: str, tokens: int = 0, cost: float = 0.0, tier: str = ""
    ) -> Verdict:
        """Would a request of this size be admitted now? Changes nothing."""
        return await self.admit(user_id, "-", tokens, cost, mode="check", tier=tier)

    async def record_request(
        self, user_id: str, tokens: int = 0, cost: float = 0.0, request_id: str | None = None
    ) -> Verdict:
        """Admit and charge a request of known size at once (nothing to settle)."""
        return await self.admit(user_id, request_id or uuid.uuid4().hex, tokens, cost, "record")

    async def settle(
        self, user_id: str, request_id: str, tokens: int, cost_usd: float, *, counted: bool = True
    ) -> bool:
        """Replace a reservation by the real usage (or release it); True if one was held."""
        check_usage(tokens, cost_usd)
        keys = self._keys(user_id).settled
        args = [request_id, tokens, nano(cost_usd), int(counted), self.config.reservation_ttl_ms]
        return bool(await self.bus.run_script(self._settle, keys, args))

    async def report(
        self, user_id: str, session_id: str | None = None, tier: str = ""
    ) -> LimitsReport:
        """The user's rate limits as they stand, and the limits that apply to it (its
        ``tier``'s, under its own overrides)."""
        rows = [
            RateLimitRow(
                limit_type=state.name,
                limit=state.limit,
                used=round(state.limit - state.remaining, 9),
                remaining=state.remaining,
                reset_s=state.reset_s,
            )
            for state in await self.status(user_id, tier)
        ]
        config = await self.config_of(user_id, tier)
        return LimitsReport(user_id=user_id, tier=tier, limits=rows, config=config)

    async def status(self, user_id: str, tier: str = "") -> list[LimitState]:
        """Every limit of the user, as it stands."""
        return (await self.check_rate_limit(user_id, tier=tier)).limits

    async def config_of(self, user_id: str, tier: str = "") -> dict[str, float | None]:
        """The user's limits: overrides where set, else its tier's (or the defaults)."""
        stored = await self.bus.redis.hgetall(
            limits_key(self.bus.names, user_id, "config", self.root)
        )
        return from_redis(stored, LIMIT_FIELDS, self._tier_configs.get(tier, self.config))

    async def set_config(self, user_id: str, changes: dict[str, float | None]) -> None:
        """Override some limits of one user (None: unlimited); others stay as they are."""
        values = to_redis(changes, LIMIT_FIELDS)
        if values:
            await self.bus.redis.hset(
                limits_key(self.bus.names, user_id, "config", self.root),
                mapping=values,  # type: ignore[arg-type]
            )

    async def reset(self, user_id: str) -> None:
        """Forget the user's recent requests, charges and alerts (not its overrides)."""
        await self.bus.redis.delete(*self._keys(user_id).usage)
