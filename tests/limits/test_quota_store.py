"""The quota keeper's store on a real Redis: against a reference model, and its edges."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.limits._amounts import nano
from actors.limits._quota_store import Periods
from actors.runtime.config import QUOTA_FIELDS
from tests.conftest import redis_ms, until_redis_time
from tests.limits.conftest import (
    MakeQuotas,
    dollars,
    maybe,
    model_settings,
    rids,
    sizes,
    user,
)

# -- the reference model -------------------------------------------------------------

_PERIODS = (("monthly", "monthly"), ("daily", "daily"), ("per_session", "session"))
_DIMS = (("request", "requests", 0), ("token", "tokens", 1), ("cost", "cost", 2))


@dataclass
class Model:
    """Quotas within one month and one day: counters per period, reservations."""

    config: dict[str, Any]
    share: float
    used: dict[str, list[int]] = field(default_factory=dict)  # period key -> req, tok, nano
    held: dict[str, tuple[str | None, int, int, bool]] = field(default_factory=dict)
    warned: set[tuple[str, str]] = field(default_factory=set)
    released: set[str] = field(default_factory=set)  # released before they were reserved

    def keys(self, session: str | None) -> list[tuple[str, str, str]]:
        out = [("monthly", "monthly", "month"), ("daily", "daily", "day")]
        if session:
            out.append(("per_session", "session", f"session:{session}"))
        return out

    def checks(
        self, session: str | None, tokens: int, cost: int
    ) -> list[tuple[str, Any, int, int, str]]:
        out = []
        for period, short, key in self.keys(session):
            used = self.used.setdefault(key, [0, 0, 0])
            for dim, plural, index in _DIMS:
                limit = self.config[f"{period}_{dim}_limit"]
                if limit is not None:
                    limit = nano(limit) if dim == "cost" else limit
                    amount = (1, tokens, cost)[index]
                    out.append((f"{short}_{plural}", limit, used[index], amount, key))
        return out

    def admit(
        self, rid: str, session: str | None, tokens: int, cost: int
    ) -> tuple[set[str], set[str]]:
        """(the quotas it would break, the warnings it raises) and charge if none broke."""
        checks = self.checks(session, tokens, cost)
        broken = {name for name, limit, used, amount, _k in checks if used + amount > limit}
        if broken:
            return broken, set()
        for _period, _short, key in self.keys(session):
            for index, amount in enumerate((1, tokens, cost)):
                self.used[key][index] += amount
        self.held[rid] = (session, tokens, cost, True)
        warnings = set()
        for name, limit, used, amount, key in checks:
            if (
                self.share > 0
                and used + amount >= self.share * limit
                and (key, name) not in self.warned
            ):
                self.warned.add((key, name))
                warnings.add(name)
        return broken, warnings

    def settle(self, rid: str, tokens: int, cost: int, counted: bool) -> bool:
        if rid not in self.held and not counted:
            self.released.add(rid)  # released before reserved: a late ask is a duplicate
        if rid not in self.held or not self.held[rid][3]:
            return False
        session, held_tokens, held_cost, _open = self.held[rid]
        real = (tokens, cost) if counted else (0, 0)
        for _period, _short, key in self.keys(session):
            self.used[key][1] += real[0] - held_tokens
            self.used[key][2] += real[1] - held_cost
            if not counted:
                self.used[key][0] -= 1
        if counted:
            self.held[rid] = (session, tokens, cost, False)
        else:
            del self.held[rid]
        return True


maybe_count = maybe(st.integers(min_value=0, max_value=8))
maybe_tokens = maybe(st.integers(min_value=0, max_value=1_500))
maybe_cost = maybe(dollars(300))
configs = st.fixed_dictionaries(
    {
        name: (
            maybe_count if "request" in name else maybe_tokens if "token" in name else maybe_cost
        )
        for name in QUOTA_FIELDS
    }
)
sessions = st.sampled_from([None, "s1", "s2"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), rids, sessions, sizes),
        st.tuples(st.just("reserve"), rids, sessions, sizes),
        st.tuples(st.just("check"), st.just("-"), sessions, sizes),
        st.tuples(st.just("settle"), rids, st.just(None), st.tuples(sizes, st.booleans())),
    ),
    max_size=30,
)


@model_settings
@given(config=configs, share=st.sampled_from([0.0, 0.5, 0.8, 1.0]), ops=operations)
async def test_the_quota_keeper_agrees_with_the_reference_model(
    make_quotas: MakeQuotas, config: dict[str, Any], share: float, ops: list[tuple[Any, ...]]
) -> None:
    store, uid, model = make_quotas(**config, warning_share=share), user(), Model(config, share)
    periods = Periods.at(store.bus.now_ms(), store.zone)
    for kind, rid, session, arg in ops:
        if kind == "settle":
            (tokens, cost), counted = arg
            settled = await store.settle(uid, rid, tokens, cost, counted=counted)
            assert settled == model.settle(rid, tokens, nano(cost), counted)
            continue
        tokens, cost = arg
        if kind == "check":
            verdict = await store.admit(uid, session, "-", tokens, cost, mode="check")
            checks = model.checks(session, tokens, nano(cost, up=True))
            broken = {n for n, lim, used, amount, _k in checks if used + amount > lim}
            assert verdict.admitted == (not broken)
            continue
        if rid in model.held or rid in model.released:
            verdict = await store.admit(uid, session, rid, tokens, cost)
            assert verdict.admitted and verdict.duplicate  # charged once
            continue
        broken, warnings = model.admit(rid, session, tokens, nano(cost, up=True))
        verdict = await store.admit(uid, session, rid, tokens, cost)
        assert verdict.admitted == (not broken), (broken, verdict)
        if broken:
            assert verdict.limit_type in broken
        else:
            assert {name for name, _l, _u in verdict.warnings} == warnings
    if Periods.at(store.bus.now_ms(), store.zone) != periods:
        return  # the example straddled midnight: the model knows one day only
    usage = await store.get_usage(uid)
    rows = {row["quota_type"]: row for row in usage["quotas"]}
    month = model.used.get("month", [0, 0, 0])
    for name, index in (("monthly_requests", 0), ("monthly_tokens", 1)):
        assert rows[name]["used"] == month[index]
    assert rows["monthly_cost"]["used"] == pytest.approx(month[2] / 1e9)


# -- edges ---------------------------------------------------------------------------


async def test_usage_lists_every_quota_with_remaining_and_reset(make_quotas: MakeQuotas) -> None:
    store, uid = make_quotas(daily_request_limit=10, monthly_cost_limit=2.0,
                             per_session_token_limit=500), user()  # fmt: skip
    await store.admit(uid, "s1", "a", 120, 0.25)
    usage = await store.get_usage(uid, "s1")
    rows = {row["quota_type"]: row for row in usage["quotas"]}
    assert rows["daily_requests"] | {"resets_at": None} == {
        "quota_type": "daily_requests", "period": "daily", "limit": 10, "used": 1,
        "remaining": 9, "resets_at": None,
    }  # fmt: skip
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert rows["daily_requests"]["resets_at"] in (
        f"{tomorrow.isoformat()}T00:00:00+00:00",
        f"{(tomorrow + dt.timedelta(days=1)).isoformat()}T00:00:00+00:00",  # just past midnight
    )
    assert rows["monthly_cost"]["used"] == 0.25 and rows["monthly_cost"]["remaining"] == 1.75
    assert rows["session_tokens"]["used"] == 120 and rows["session_tokens"]["resets_at"] is None
    assert rows["monthly_requests"]["limit"] is None  # unlimited
    assert usage["config"]["daily_request_limit"] == 10


async def test_a_warning_goes_out_once_per_period(make_quotas: MakeQuotas) -> None:
    store, uid = make_quotas(daily_request_limit=10, warning_share=0.8), user()
    warned = []
    for i in range(10):
        verdict = await store.admit(uid, None, f"r{i}", 0, 0.0)
        warned += [(i, name) for name, _limit, _used in verdict.warnings]
    assert warned == [(7, "daily_requests")]  # the 8th request reached 80%


async def test_a_never_completed_request_is_released_when_it_expires(
    make_quotas: MakeQuotas,
) -> None:
    ttl_ms = 2_000  # room for the next call on a slow machine
    store, uid = make_quotas(daily_token_limit=1_000, reservation_ttl_ms=ttl_ms), user()
    assert (await store.admit(uid, None, "lost", 900, 0.0)).admitted
    reserved_by = await redis_ms(store.bus.redis)  # on the clock the script read
    assert not (await store.admit(uid, None, "next", 200, 0.0)).admitted
    await until_redis_time(store.bus.redis, reserved_by + ttl_ms)  # it has expired
    assert (await store.admit(uid, None, "next", 200, 0.0)).admitted  # tokens refunded
    rows = {row["quota_type"]: row for row in (await store.get_usage(uid))["quotas"]}
    assert rows["daily_tokens"]["used"] == 200
    assert rows["daily_requests"]["used"] == 2  # the lost request still counts as made
    assert not await store.settle(uid, "lost", 900, 0.0)  # too late to settle


async def test_reset_forgets_usage_but_keeps_overrides(make_quotas: MakeQuotas) -> None:
    store, uid = make_quotas(daily_request_limit=1), user()
    await store.set_config(uid, {"daily_request_limit": 2, "monthly_cost_limit": None})
    assert (await store.admit(uid, "s", "a", 0, 0.0)).admitted
    assert (await store.admit(uid, "s", "b", 0, 0.0)).admitted
    refused = await store.admit(uid, "s", "c", 0, 0.0)
    assert not refused.admitted and refused.limit_type == "daily_requests"
    assert refused.period == "daily" and refused.first_alert and refused.rejections == 1
    again = await store.admit(uid, "s", "d", 0, 0.0)
    assert not again.first_alert and again.rejections == 2  # one alert per period
    await store.reset(uid)
    assert (await store.admit(uid, "s", "c", 0, 0.0)).admitted
    assert (await store.config_of(uid))["daily_request_limit"] == 2


async def test_periods_follow_the_calendar_in_the_time_zone() -> None:
    zone = zoneinfo.ZoneInfo("America/New_York")
    # 2026-03-01 03:30 UTC is still February 28 in New York.
    at = int(dt.datetime(2026, 3, 1, 3, 30, tzinfo=dt.UTC).timestamp() * 1000)
    periods = Periods.at(at, zone)
    assert (periods.month, periods.day) == ("2026-02", "2026-02-28")
    ends = dt.datetime.fromtimestamp(periods.month_ends_ms / 1000, dt.UTC)
    assert ends == dt.datetime(2026, 3, 1, 5, 0, tzinfo=dt.UTC)  # midnight EST
    utc = Periods.at(int(dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC).timestamp() * 1000),
                     zoneinfo.ZoneInfo("UTC"))  # fmt: skip
    assert utc.month == "2026-12"
    assert (
        utc.month_ends_ms
        == utc.day_ends_ms
        == int(dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    )


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"daily_cost_limit": -0.5}, "daily_cost_limit"),
        ({"monthly_token_limit": "many"}, "monthly_token_limit"),
        ({"daily_requests": 3}, "daily_requests"),
        ({"per_session_cost_limit": float("inf")}, "per_session_cost_limit"),
    ],
)
async def test_bad_quotas_are_refused_by_name(
    make_quotas: MakeQuotas, changes: dict[str, Any], named: str
) -> None:
    store, uid = make_quotas(), user()
    with pytest.raises(ValueError, match=named):
        await store.set_config(uid, changes)


async def test_a_release_before_its_reservation_leaves_the_late_ask_uncharged(
    make_quotas: MakeQuotas,
) -> None:
    """Redis stalled: the router gave up on admission and released the request before
    the quota keeper ran its ask. The ask, when it runs, is a duplicate: nothing is
    charged (the soak found such requests counted until their reservation expired)."""
    store, uid = make_quotas(daily_request_limit=10, daily_token_limit=1_000), user()
    assert not await store.settle(uid, "gave-up", 0, 0.0, counted=False)
    late = await store.admit(uid, None, "gave-up", 500, 0.0)
    assert late.admitted and late.duplicate
    rows = {row["quota_type"]: row for row in (await store.get_usage(uid))["quotas"]}
    assert rows["daily_requests"]["used"] == 0 and rows["daily_tokens"]["used"] == 0
