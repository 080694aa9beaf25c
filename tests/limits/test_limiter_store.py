"""The limiter's store on a real Redis: against a reference model, and its edges."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.limits._amounts import nano
from actors.limits._keys import limits_key
from actors.limits._limiter_store import LimiterStore
from actors.messages import CODEC
from tests.conftest import MakeBus, redis_ms, until_redis_time
from tests.limits.conftest import (
    MakeLimiter,
    dollars,
    limits,
    maybe,
    model_settings,
    rids,
    sizes,
    user,
)

# -- the reference model -------------------------------------------------------------


@dataclass
class Model:
    """What the limiter must do while every charge is inside every window (a test
    example runs for well under a minute): sums of what was admitted, against limits."""

    config: dict[str, Any]
    charged: dict[str, tuple[int, int]] = field(default_factory=dict)  # rid -> tokens, nano
    open: set[str] = field(default_factory=set)  # reservations not settled yet
    released: set[str] = field(default_factory=set)  # released before they were reserved

    def over(self, tokens: int, cost: int) -> set[str]:
        """The limits one more request of this size would break."""
        count = len(self.charged)
        used_tokens = sum(t for t, _c in self.charged.values())
        used_cost = sum(c for _t, c in self.charged.values())
        wanted = {
            "burst": (self.config["burst_limit"], count + 1),
            "requests_per_minute": (self.config["requests_per_minute"], count + 1),
            "requests_per_hour": (self.config["requests_per_hour"], count + 1),
            "tokens_per_minute": (self.config["tokens_per_minute"], used_tokens + tokens),
            "tokens_per_hour": (self.config["tokens_per_hour"], used_tokens + tokens),
            "cost_per_minute": (_nano(self.config["cost_per_minute"]), used_cost + cost),
            "cost_per_hour": (_nano(self.config["cost_per_hour"]), used_cost + cost),
        }
        return {
            name for name, (limit, after) in wanted.items() if limit is not None and after > limit
        }


def _nano(value: float | None) -> int | None:
    return None if value is None else nano(value)


maybe_count = maybe(st.integers(min_value=0, max_value=8))
maybe_tokens = maybe(st.integers(min_value=0, max_value=3_000))
maybe_cost = maybe(dollars(400))
configs = st.fixed_dictionaries(
    {
        "requests_per_minute": maybe_count,
        "requests_per_hour": maybe_count,
        "tokens_per_minute": maybe_tokens,
        "tokens_per_hour": maybe_tokens,
        "cost_per_minute": maybe_cost,
        "cost_per_hour": maybe_cost,
        "burst_limit": maybe_count,
        "burst_window_ms": st.just(600_000),
    }
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), rids, sizes),
        st.tuples(st.just("reserve"), rids, sizes),
        st.tuples(st.just("record"), st.just(""), sizes),
        st.tuples(st.just("check"), st.just(""), sizes),
        st.tuples(st.just("settle"), rids, st.tuples(sizes, st.booleans())),
    ),
    max_size=30,
)


@model_settings
@given(config=configs, ops=operations)
async def test_the_limiter_agrees_with_the_reference_model(
    make_limiter: MakeLimiter, config: dict[str, Any], ops: list[tuple[str, str, Any]]
) -> None:
    store, uid, model = make_limiter(**config), user(), Model(config)
    recorded = 0
    for kind, given_rid, arg in ops:
        rid = given_rid
        if kind == "settle":
            (tokens, cost), counted = arg
            settled = await store.settle(uid, rid, tokens, cost, counted=counted)
            assert settled == (rid in model.open)
            if not counted and rid not in model.open and rid not in model.charged:
                model.released.add(rid)  # a late ask of it will be a duplicate
            if settled:
                model.open.discard(rid)
                if counted:
                    model.charged[rid] = (tokens, nano(cost))
                else:
                    del model.charged[rid]
            continue
        tokens, cost = arg
        if kind == "reserve" and (rid in model.charged or rid in model.released):
            verdict = await store.admit(uid, rid, tokens, cost)
            assert verdict.admitted and verdict.duplicate  # charged once
            continue
        broken = model.over(tokens, nano(cost, up=True))
        if kind == "check":
            verdict = await store.check_rate_limit(uid, tokens, cost)
        elif kind == "record":
            recorded += 1
            rid = f"rec{recorded}"
            verdict = await store.record_request(uid, tokens, cost, request_id=rid)
        else:
            verdict = await store.admit(uid, rid, tokens, cost)
        assert verdict.admitted == (not broken), (kind, broken, verdict)
        if not verdict.admitted:
            assert verdict.limit_type in broken
            continue
        if kind != "check":
            model.charged[rid] = (tokens, nano(cost, up=True))
        if kind == "reserve":
            model.open.add(rid)
    # What the store reports agrees with the model too.
    states = {s.name: s for s in await store.status(uid)}
    used_tokens = sum(t for t, _c in model.charged.values())
    for name, used in (("requests_per_minute", len(model.charged)),
                       ("tokens_per_minute", used_tokens)):  # fmt: skip
        if config[name] is not None:
            assert states[name].limit - states[name].remaining == min(used, config[name])


# -- edges ---------------------------------------------------------------------------


async def test_requests_slide_exactly_in_any_window(make_limiter: MakeLimiter) -> None:
    """Times are read from Redis, whose clock the limiter uses: the only thing asked of
    the machine is a few calls within each half window (a second)."""
    window_ms = 2_000
    store, uid = make_limiter(burst_limit=3, burst_window_ms=window_ms), user()
    redis = store.bus.redis
    assert (await store.admit(uid, "r0", 0, 0.0)).admitted
    r0_at = int(await redis.zscore(limits_key(store.bus.names, uid, "requests"), "r0"))
    await until_redis_time(redis, r0_at + window_ms // 2)  # the others come later
    admitted = [(await store.admit(uid, f"r{i}", 0, 0.0)).admitted for i in range(1, 5)]
    assert admitted == [True, True, False, False]
    before = await redis_ms(redis)
    refused = await store.admit(uid, "r5", 0, 0.0)
    after = await redis_ms(redis)
    assert refused.limit_type == "burst" and refused.limit == 3 and refused.current == 3
    assert refused.window_s == window_ms / 1000
    # until r0 leaves the window, to the millisecond of the clock it was admitted by
    assert refused.retry_after_s is not None and refused.retry_after_s > 0
    leaves = r0_at + window_ms
    assert (leaves - after) / 1000 <= refused.retry_after_s <= (leaves - before) / 1000
    await asyncio.sleep(refused.retry_after_s)  # waiting as told is enough
    assert (await store.admit(uid, "r6", 0, 0.0)).admitted  # the oldest slid out
    assert not (await store.admit(uid, "r7", 0, 0.0)).admitted  # but only the oldest


async def test_a_request_too_big_alone_is_told_waiting_will_not_help(
    make_limiter: MakeLimiter,
) -> None:
    store, uid = make_limiter(tokens_per_minute=1_000), user()
    verdict = await store.admit(uid, "big", 1_001, 0.0)
    assert not verdict.admitted and verdict.limit_type == "tokens_per_minute"
    assert verdict.retry_after_s is None


async def test_a_waiting_request_is_told_when_it_fits(make_limiter: MakeLimiter) -> None:
    store, uid = make_limiter(tokens_per_minute=1_000), user()
    before = await redis_ms(store.bus.redis)
    assert (await store.admit(uid, "a", 800, 0.0)).admitted
    verdict = await store.admit(uid, "b", 300, 0.0)
    elapsed = (await redis_ms(store.bus.redis) - before) / 1000
    assert not verdict.admitted and verdict.current == 800
    # "a" counts for 60 to 61 s (per-second buckets), less what has passed since.
    assert verdict.retry_after_s is not None and 60 - elapsed < verdict.retry_after_s <= 61


async def test_every_limit_is_checked_before_any_is_charged(make_limiter: MakeLimiter) -> None:
    store, uid = make_limiter(requests_per_minute=10, tokens_per_minute=100), user()
    assert not (await store.admit(uid, "big", 101, 0.0)).admitted
    states = {s.name: s for s in await store.status(uid)}
    assert states["requests_per_minute"].remaining == 10  # the refusal charged nothing
    assert states["tokens_per_minute"].remaining == 100


async def test_settling_refunds_or_charges_the_difference(make_limiter: MakeLimiter) -> None:
    store, uid = make_limiter(tokens_per_minute=1_000, cost_per_minute=1.0), user()
    await store.admit(uid, "a", 600, 0.5)
    assert await store.settle(uid, "a", 250, 0.125)
    assert not await store.settle(uid, "a", 999, 0.9)  # once only
    states = {s.name: s for s in await store.status(uid)}
    assert states["tokens_per_minute"].remaining == 750
    assert states["cost_per_minute"].remaining == pytest.approx(0.875)
    await store.admit(uid, "b", 0, 0.0)  # a reservation of nothing, then real usage
    await store.settle(uid, "b", 100, 0.0)
    states = {s.name: s for s in await store.status(uid)}
    assert states["tokens_per_minute"].remaining == 650


async def test_a_released_request_does_not_count(make_limiter: MakeLimiter) -> None:
    store, uid = make_limiter(requests_per_minute=1), user()
    assert (await store.admit(uid, "a", 10, 0.0)).admitted
    await store.settle(uid, "a", 0, 0.0, counted=False)  # refused by the quota keeper
    assert (await store.admit(uid, "a", 10, 0.0)).admitted  # a retry is a new request


async def test_overrides_survive_and_unlimited_is_null(make_limiter: MakeLimiter) -> None:
    store, uid = make_limiter(requests_per_minute=20, cost_per_hour=50.0), user()
    await store.set_config(uid, {"requests_per_minute": 2, "cost_per_hour": None})
    config = await store.config_of(uid)
    assert config["requests_per_minute"] == 2 and config["cost_per_hour"] is None
    assert config["tokens_per_minute"] is None  # untouched: the default
    again = make_limiter(requests_per_minute=20)  # another process, same Redis
    assert [(await again.admit(uid, f"r{i}", 0, 0.0)).admitted for i in range(3)] == [
        True,
        True,
        False,
    ]
    await store.reset(uid)
    assert (await store.admit(uid, "r9", 0, 0.0)).admitted  # usage gone, override kept
    assert (await store.config_of(uid))["requests_per_minute"] == 2


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"requests_per_minute": -1}, "requests_per_minute"),
        ({"tokens_per_hour": "lots"}, "tokens_per_hour"),
        ({"cost_per_minute": True}, "cost_per_minute"),
        ({"burst_window_ms": 0}, "burst_window_ms"),
        ({"requests_per_second": 3}, "requests_per_second"),
    ],
)
async def test_bad_limits_are_refused_by_name(
    make_limiter: MakeLimiter, changes: dict[str, Any], named: str
) -> None:
    store, uid = make_limiter(), user()
    with pytest.raises(ValueError, match=named):
        await store.set_config(uid, changes)
    assert await store.bus.redis.exists(limits_key(store.bus.names, uid, "config")) == 0


async def test_the_scripts_run_on_every_server(make_bus: MakeBus) -> None:
    """The same Lua on the external server, the embedded one and Redis 6.2."""
    bus = await make_bus(CODEC)
    store, uid = LimiterStore(bus, limits(requests_per_minute=1, tokens_per_hour=50)), user()
    assert (await store.admit(uid, "a", 40, 0.01)).admitted
    assert (await store.admit(uid, "b", 1, 0.0)).limit_type == "requests_per_minute"
    assert await store.settle(uid, "a", 10, 0.0)
    await bus.redis.script_flush()  # a server that forgot its scripts: loaded again
    states = {s.name: s for s in await store.status(uid)}
    assert states["tokens_per_hour"].remaining == 40


@pytest.mark.parametrize(("tokens", "cost", "named"), [(-1, 0.0, "tokens"), (1, -0.1, "cost"),
                                                       (1, float("nan"), "cost")])  # fmt: skip
async def test_negative_usage_is_refused(
    make_limiter: MakeLimiter, tokens: int, cost: float, named: str
) -> None:
    store, uid = make_limiter(tokens_per_minute=10), user()
    with pytest.raises(ValueError, match=named):
        await store.record_request(uid, tokens, cost)
    with pytest.raises(ValueError, match=named):
        await store.settle(uid, "a", tokens, cost)


async def test_a_release_before_its_reservation_leaves_the_late_ask_uncounted(
    make_limiter: MakeLimiter,
) -> None:
    """Redis stalled: the router released the request before the limiter ran its ask;
    the ask, when it runs, is a duplicate and counts in no window."""
    store, uid = make_limiter(requests_per_minute=1), user()
    assert not await store.settle(uid, "gave-up", 0, 0.0, counted=False)
    late = await store.admit(uid, "gave-up", 10, 0.0)
    assert late.admitted and late.duplicate
    assert (await store.admit(uid, "next", 10, 0.0)).admitted  # the minute's one request
