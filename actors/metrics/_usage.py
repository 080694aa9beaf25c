"""What users used this day and this month, for the stats: requests, tokens and cost,
in total and per user (the top users, and any page of them by each), in the quotas'
time zone; and how many of each user's requests a rate limit or quota refused.

Kept apart from the series: a user id is no Prometheus label (one series per user
would grow without bound), so per-user numbers live in sorted sets that expire with
their period. Counted as the quota keeper counts (``settlement``): a refused request
not at all (but as a rejection), a cache hit as a request with no tokens and no cost.
Every user seen in a period is in each of its sorted sets (with 0 where it has none),
so that a page by any of them holds every user.

Redis keys, per period (``day:2026-11-28``, ``month:2026-11``)::

    {ns}:metrics:usage:{period}            hash   requests, tokens, cost, rejections
    {ns}:metrics:usage:{period}:{field}    zset   user -> its requests, tokens, cost
                                                  or rejections
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from typing import Any

from ..messages import (
    PeriodUsage,
    RequestCompleted,
    UsersPage,
    UsersQuery,
    UserStanding,
    UserUsage,
    kind_of,
)

__all__ = ["UsageBook"]

FIELDS = ("requests", "tokens", "cost", "rejections")
_KEEP_S = {"day": 2 * 86_400, "month": 35 * 86_400}  # past its end, for a late look
_TOP = 10


class UsageBook:
    """Gathers usage between flushes; writes it to Redis and reads it back."""

    def __init__(self, ns: str, timezone: str = "UTC") -> None:
        self.ns = ns
        self.zone = zoneinfo.ZoneInfo(timezone)
        self._day: tuple[int, int, str, str] = (0, 0, "", "")  # start, end, day, month
        # period -> user -> [requests, tokens, cost, rejections]
        self._gathered: dict[str, dict[str, list[float]]] = defaultdict(dict)

    def periods(self, ts_ms: int) -> tuple[str, str]:
        """``("day:YYYY-MM-DD", "month:YYYY-MM")`` at ``ts_ms`` (worked out once a day)."""
        start, end, day, month = self._day
        if not start <= ts_ms < end:
            local = dt.datetime.fromtimestamp(ts_ms / 1000, self.zone)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            following = (midnight + dt.timedelta(days=1)).replace(tzinfo=None)
            following_ms = int(following.replace(tzinfo=self.zone).timestamp() * 1000)
            day, month = f"day:{local:%Y-%m-%d}", f"month:{local:%Y-%m}"
            self._day = (int(midnight.timestamp() * 1000), following_ms, day, month)
        return day, month

    def observe(self, event: RequestCompleted) -> None:
        refused = kind_of(event.error_kind).refused  # never made: a rejection only
        tokens, cost = (0, 0.0) if event.cache_hit else (event.usage.total_tokens, event.cost_usd)
        for period in self.periods(event.ts_ms):
            row = self._gathered[period].setdefault(event.user_id, [0.0, 0.0, 0.0, 0.0])
            if refused:
                row[3] += 1
                continue
            row[0] += 1
            row[1] += tokens
            row[2] += cost

    def drain(self, pipe: Any) -> dict[str, dict[str, list[float]]]:
        """Queue what was gathered on ``pipe``; the gathered, to put back on failure."""
        gathered, self._gathered = self._gathered, defaultdict(dict)
        for period, users in gathered.items():
            totals = self._key(period)
            sums = [0.0] * len(FIELDS)
            for user, row in users.items():
                for index, field in enumerate(FIELDS):  # 0 too: a member of every set
                    pipe.zincrby(f"{totals}:{field}", row[index], user)
                    sums[index] += row[index]
            for index, field in enumerate(FIELDS):
                pipe.hincrbyfloat(totals, field, sums[index])
            keep = _KEEP_S[period.partition(":")[0]]
            for key in (totals, *(f"{totals}:{field}" for field in FIELDS)):
                pipe.expire(key, keep)
        return gathered

    def restore(self, gathered: dict[str, dict[str, list[float]]]) -> None:
        """Put back what a failed flush did not write (added to what came since)."""
        for period, users in gathered.items():
            for user, row in users.items():
                mine = self._gathered[period].setdefault(user, [0.0] * len(FIELDS))
                for index in range(len(FIELDS)):
                    mine[index] += row[index]

    def forget(self) -> None:
        self._gathered = defaultdict(dict)

    async def read(self, redis: Any, now_ms: int) -> list[PeriodUsage]:
        """This day's and this month's usage, with the top users by tokens."""
        found = []
        for period in self.periods(now_ms):
            totals = self._key(period)
            pipe = redis.pipeline(transaction=False)
            pipe.hmget(totals, *FIELDS[:3])
            pipe.zcount(f"{totals}:requests", "(0", "+inf")  # not those only refused
            # Above 0: a user only refused is in every set, with 0.
            pipe.zrevrangebyscore(f"{totals}:tokens", "+inf", "(0", 0, _TOP, withscores=True)
            pipe.zrevrangebyscore(f"{totals}:requests", "+inf", "(0", 0, _TOP)
            sums, users, by_tokens, by_requests = await pipe.execute()
            top = [bytes(user).decode() for user, _score in by_tokens]
            top += [u for u in (bytes(user).decode() for user in by_requests) if u not in top]
            top = top[:_TOP]
            rows: list[UserUsage] = []
            if top:
                pipe = redis.pipeline(transaction=False)
                for field in FIELDS[:3]:
                    pipe.zmscore(f"{totals}:{field}", top)
                requests, tokens, costs = await pipe.execute()
                rows = [
                    UserUsage(
                        user_id=user,
                        requests=int(r or 0),
                        tokens=int(t or 0),
                        cost_usd=round(c or 0.0, 9),
                    )
                    for user, r, t, c in zip(top, requests, tokens, costs, strict=True)
                ]
                rows.sort(key=lambda row: (-row.tokens, -row.requests, row.user_id))
            kind, _, label = period.partition(":")
            found.append(
                PeriodUsage(
                    period="daily" if kind == "day" else "monthly",
                    label=label,
                    requests=int(float(sums[0] or 0)),
                    tokens=int(float(sums[1] or 0)),
                    cost_usd=round(float(sums[2] or 0), 9),
                    users=int(users),
                    top_users=rows,
                )
            )
        return found

    async def page(self, redis: Any, now_ms: int, query: UsersQuery) -> UsersPage:
        """One page of the period's users, most first by ``query.sort`` (ties: by id)."""
        day, month = self.periods(now_ms)
        period = day if query.period == "daily" else month
        totals = self._key(period)
        ranked = f"{totals}:{query.sort}"
        pipe = redis.pipeline(transaction=False)
        pipe.zcard(ranked)
        pipe.zrevrange(ranked, query.offset, query.offset + query.limit - 1)
        total, members = await pipe.execute()
        users = [bytes(member).decode() for member in members]
        rows: list[UserStanding] = []
        if users:
            pipe = redis.pipeline(transaction=False)
            for field in FIELDS:
                pipe.zmscore(f"{totals}:{field}", users)
            requests, tokens, costs, rejections = await pipe.execute()
            rows = [
                UserStanding(user_id=user, requests=int(r or 0), tokens=int(t or 0),
                             cost_usd=round(c or 0.0, 9), rejections=int(j or 0))
                for user, r, t, c, j in zip(users, requests, tokens, costs, rejections,
                                            strict=True)
            ]  # fmt: skip
        return UsersPage(period=query.period, label=period.partition(":")[2], sort=query.sort,
                         offset=query.offset, limit=query.limit, total=int(total),
                         users=rows)  # fmt: skip

    def _key(self, period: str) -> str:
        return f"{self.ns}:metrics:usage:{period}"
