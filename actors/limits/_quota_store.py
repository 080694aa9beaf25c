"""Quotas in Redis: the quota keeper's Python face over ``lua/quota_*.lua``.

Key layout (all of one user's keys in one Cluster slot, ``{u}``):

- ``{ns}:quota:{u}:config``            hash: overrides ("null": unlimited; cost in nano-$)
- ``{ns}:quota:{u}:month:<YYYY-MM>``   hash: requests, tokens, cost (nano-$) and flags
- ``{ns}:quota:{u}:day:<YYYY-MM-DD>``  hash: likewise
- ``{ns}:quota:{u}:session:<id>``      hash: likewise, while the session is active
- ``{ns}:quota:{u}:reservations``      hash: request id -> periods, amounts, state
- ``{ns}:quota:{u}:expiring``          zset: request id -> when its reservation expires
- ``{ns}:quota:{u}:sessions``          set: the user's session ids (for resets)

Months and days are calendar periods in the configured time zone, on the Redis
server's clock (``Bus.now_ms``), so a process whose clock is off changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from bus import Bus, lua_source

from ..messages import LimitsReport, LimitState, QuotaRow
from ..runtime.config import QUOTA_FIELDS, QuotaConfig
from ._amounts import check_usage, from_redis, lua_defaults, nano, shown, to_redis, usd
from ._keys import QuotaKeys, quotas_key
from ._verdict import Verdict

__all__ = ["Periods", "QuotaStore", "iso", "period_of"]

_SAFE_SESSION = re.compile(r"^[A-Za-z0-9._:@/-]{1,128}$")
_KEEP_AFTER_MONTH_MS = 7 * 86_400_000  # late settles still find last period's keys
_KEEP_AFTER_DAY_MS = 2 * 86_400_000


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Periods:
    """The month and day a moment falls in, in a time zone, and when each ends."""

    month: str
    day: str
    month_ends_ms: int
    day_ends_ms: int
    day_starts_ms: int = 0

    @classmethod
    def at(cls, now_ms: int, zone: zoneinfo.ZoneInfo) -> Periods:
        local = dt.datetime.fromtimestamp(now_ms / 1000, zone)
        today = local.date()
        tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), zone)
        first = today.replace(day=1)
        next_month = (first + dt.timedelta(days=32)).replace(day=1)
        month_end = dt.datetime.combine(next_month, dt.time(), zone)
        return cls(
            month=f"{today.year:04d}-{today.month:02d}",
            day=today.isoformat(),
            month_ends_ms=int(month_end.timestamp() * 1000),
            day_ends_ms=int(tomorrow.timestamp() * 1000),
            day_starts_ms=int(dt.datetime.combine(today, dt.time(), zone).timestamp() * 1000),
        )


class _Answer(msgspec.Struct):
    verdict: str
    quotas: list[list[Any]] | dict[str, Any] = []
    warnings: list[list[Any]] | dict[str, Any] = []
    quota_type: str = ""
    limit: float = 0
    current: float = 0
    period: str = ""
    first: int = 0
    rejections: int = 0


_decode = msgspec.json.Decoder(_Answer).decode


def _session_part(session_id: str) -> str:
    if _SAFE_SESSION.match(session_id):
        return session_id
    return "#" + hashlib.sha256(session_id.encode()).hexdigest()[:24]


class QuotaStore:
    """Monthly, daily and per-session quotas per user, reserved then settled, in Redis."""

    fields: tuple[str, ...] = QUOTA_FIELDS

    def __init__(
        self, bus: Bus, config: QuotaConfig, tiers: Mapping[str, QuotaConfig] | None = None
    ) -> None:
        self.bus = bus
        self.config = config
        self.zone = zoneinfo.ZoneInfo(config.timezone)
        self.admit_script = bus.redis.register_script(lua_source("actors.limits", "quota_admit"))
        self._settle = bus.redis.register_script(lua_source("actors.limits", "quota_settle"))
        self._defaults = lua_defaults(config, QUOTA_FIELDS)
        # A tier's limits replace the defaults for its users (their own overrides win).
        self._tiers = {name: lua_defaults(t, QUOTA_FIELDS) for name, t in (tiers or {}).items()}
        self._tier_configs = dict(tiers or {})
        self._periods = Periods("", "", 0, 0)

    def _key(self, user_id: str, part: str) -> str:
        return quotas_key(self.bus.names, user_id, part)

    def _keys(self, user_id: str, session_id: str | None, periods: Periods) -> QuotaKeys:
        session = _session_part(session_id) if session_id else "-"
        return QuotaKeys(
            config=self._key(user_id, "config"),
            month=self._key(user_id, f"month:{periods.month}"),
            day=self._key(user_id, f"day:{periods.day}"),
            session=self._key(user_id, f"session:{session}"),
            reservations=self._key(user_id, "reservations"),
            expiring=self._key(user_id, "expiring"),
            sessions=self._key(user_id, "sessions"),
        )

    def periods(self, now_ms: int) -> Periods:
        """The month and day at ``now_ms`` (worked out once a day)."""
        cached = self._periods
        if not cached.day_starts_ms <= now_ms < cached.day_ends_ms:
            cached = self._periods = Periods.at(now_ms, self.zone)
        return cached

    def resets_at(self, period: str, periods: Periods) -> int:
        return {"monthly": periods.month_ends_ms, "daily": periods.day_ends_ms}.get(period, 0)

    def admit_args(
        self,
        user_id: str,
        session_id: str | None,
        request_id: str,
        tokens: int,
        cost_usd: float,
        mode: str = "reserve",
        tier: str = "",
    ) -> tuple[Periods, list[str], list[Any]]:
        """The periods now, and the keys and arguments of ``admit_script``."""
        check_usage(tokens, cost_usd)
        now = self.bus.now_ms()
        periods = self.periods(now)
        cfg = self.config
        args = [
            request_id, tokens, nano(cost_usd, up=True), mode,
            _session_part(session_id) if session_id else "",
            cfg.reservation_ttl_ms,
            periods.month_ends_ms - now + _KEEP_AFTER_MONTH_MS,
            periods.day_ends_ms - now + _KEEP_AFTER_DAY_MS,
            cfg.session_ttl_ms, cfg.warning_share, *self._tiers.get(tier, self._defaults),
        ]  # fmt: skip
        return periods, list(self._keys(user_id, session_id, periods)), args

    async def admit(
        self,
        user_id: str,
        session_id: str | None,
        request_id: str,
        tokens: int,
        cost_usd: float,
        mode: str = "reserve",
        tier: str = "",
    ) -> Verdict:
        """Reserve one request, ``tokens`` and ``cost_usd`` in every period, or ``check``."""
        periods, keys, args = self.admit_args(
            user_id, session_id, request_id, tokens, cost_usd, mode, tier
        )
        raw = await self.bus.run_script(self.admit_script, keys, args)  # BusUnavailable
        answer = _decode(raw)
        now = self.bus.now_ms()
        limits = []
        for n, lim, used in answer.quotas if isinstance(answer.quotas, list) else []:
            name, limit = str(n), shown(str(n), float(lim))
            resets = self.resets_at(period_of(name), periods)
            limits.append(LimitState(
                name=name,
                limit=limit,
                remaining=max(0.0, limit - shown(name, float(used))),
                reset_s=max(0.0, (resets - now) / 1000) if resets else 0.0,
            ))  # fmt: skip
        if answer.verdict in ("ok", "dup"):
            warnings = [
                (str(n), shown(str(n), float(lim)), shown(str(n), float(used)))
                for n, lim, used in (answer.warnings if isinstance(answer.warnings, list) else [])
            ]
            return Verdict(
                admitted=True, duplicate=answer.verdict == "dup", warnings=warnings, limits=limits
            )
        name = answer.quota_type
        resets_at_ms = self.resets_at(answer.period, periods)
        return Verdict(
            admitted=False,
            limit_type=name,
            limit=shown(name, answer.limit),
            current=shown(name, answer.current),
            period=answer.period,
            resets_at_ms=resets_at_ms,
            retry_after_s=(resets_at_ms - now) / 1000 if resets_at_ms else None,
            first_alert=answer.first == 1,
            rejections=answer.rejections,
            limits=limits,
        )

    async def settle(
        self, user_id: str, request_id: str, tokens: int, cost_usd: float, *, counted: bool = True
    ) -> bool:
        """Replace a reservation by the real usage (or release it); True if one was open."""
        check_usage(tokens, cost_usd)
        keys = [self._key(user_id, "reservations"), self._key(user_id, "expiring")]
        args = [request_id, tokens, nano(cost_usd), int(counted), self.config.reservation_ttl_ms]
        return bool(await self.bus.run_script(self._settle, keys, args))

    async def get_usage(
        self, user_id: str, session_id: str | None = None, tier: str = ""
    ) -> dict[str, Any]:
        """Every quota of the user (its ``tier``'s, under its own overrides): its limit,
        what is used and left, when it resets."""
        # A check releases expired reservations first.
        await self.admit(user_id, session_id, "-", 0, 0.0, mode="check", tier=tier)
        now = self.bus.now_ms()
        periods = self.periods(now)
        keys = self._keys(user_id, session_id, periods)
        limits = await self.config_of(user_id, tier)
        pipe = self.bus.redis.pipeline(transaction=False)
        for key in (keys.month, keys.day, keys.session):
            pipe.hmget(key, "requests", "tokens", "cost")
        month, day, session = await pipe.execute()
        rows = []
        for period, used, short in (("monthly", month, "monthly"), ("daily", day, "daily"),
                                    ("per_session", session, "session")):  # fmt: skip
            if period == "per_session" and not session_id:
                continue
            for index, dim in enumerate(("request", "token", "cost")):
                limit = limits[f"{period}_{dim}_limit"]
                value = float(used[index] or 0)
                value = usd(value) if dim == "cost" else value
                resets = self.resets_at(period, periods)
                rows.append({
                    "quota_type": f"{short}_{'cost' if dim == 'cost' else dim + 's'}",
                    "period": period,
                    "limit": limit,
                    "used": value,
                    "remaining": None if limit is None else max(0.0, limit - value),
                    "resets_at": iso(resets) if resets else None,
                })  # fmt: skip
        return {"user_id": user_id, "session_id": session_id, "quotas": rows, "config": limits}

    async def report(
        self, user_id: str, session_id: str | None = None, tier: str = ""
    ) -> LimitsReport:
        """The user's quotas (and a session's) as they stand, and the limits that apply."""
        usage = await self.get_usage(user_id, session_id, tier)
        return LimitsReport(
            user_id=user_id,
            session_id=session_id,
            tier=tier,
            quotas=[msgspec.convert(row, QuotaRow) for row in usage["quotas"]],
            config=usage["config"],
        )

    async def config_of(self, user_id: str, tier: str = "") -> dict[str, float | None]:
        """The user's quotas: overrides where set, else its tier's (or the defaults)."""
        stored = await self.bus.redis.hgetall(self._key(user_id, "config"))
        return from_redis(stored, QUOTA_FIELDS, self._tier_configs.get(tier, self.config))

    async def set_config(self, user_id: str, changes: dict[str, float | None]) -> None:
        """Override some quotas of one user (None: unlimited); kept in Redis."""
        values = to_redis(changes, QUOTA_FIELDS)
        if values:
            await self.bus.redis.hset(
                self._key(user_id, "config"),
                mapping=values,  # type: ignore[arg-type]
            )

    async def reset(self, user_id: str) -> None:
        """Forget the user's usage in the current periods and sessions (not overrides)."""
        periods = self.periods(self.bus.now_ms())
        keys = self._keys(user_id, None, periods)
        sessions: Any = await self.bus.redis.smembers(keys.sessions)
        doomed = [keys.month, keys.day, keys.reservations, keys.expiring, keys.sessions]
        doomed += [self._key(user_id, f"session:{bytes(s).decode()}") for s in sessions]
        await self.bus.redis.delete(*doomed)


def period_of(quota_type: str) -> str:
    """``monthly``, ``daily`` or ``per_session``, for a quota type (``daily_tokens``)."""
    head = quota_type.partition("_")[0]
    return {"monthly": "monthly", "daily": "daily", "session": "per_session"}[head]
