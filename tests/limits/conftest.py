"""Fixtures of the limits and quotas tests: stores on a real Redis, nodes with limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from actors.limits._limiter_store import LimiterStore
from actors.limits._quota_store import QuotaStore
from actors.messages import CODEC
from actors.runtime.config import LIMIT_FIELDS, QUOTA_FIELDS, LimitsConfig, QuotaConfig
from bus import Bus
from tests.request_path.conftest import (  # noqa: F401  (fixtures)
    _clean,
    bus_config,
    http,
    make_node,
    simulator,
)

# Everything unlimited, so that a test sets only the limits it is about.
NO_LIMITS: dict[str, Any] = dict.fromkeys(LIMIT_FIELDS)
NO_QUOTAS: dict[str, Any] = dict.fromkeys(QUOTA_FIELDS)


def limits(**given: Any) -> LimitsConfig:
    return LimitsConfig(**{**NO_LIMITS, **given})


def quotas(**given: Any) -> QuotaConfig:
    return QuotaConfig(**{**NO_QUOTAS, **given})


@pytest.fixture
async def bus(server_url: str) -> AsyncIterator[Bus]:
    ns = f"lq{uuid.uuid4().hex[:10]}"
    async with Bus(server_url, CODEC, bus_config(ns)) as started:
        yield started
    await _clean(server_url, ns)


MakeLimiter = Callable[..., LimiterStore]
MakeQuotas = Callable[..., QuotaStore]


@pytest.fixture
def make_limiter(bus: Bus) -> MakeLimiter:
    def make(**given: Any) -> LimiterStore:
        return LimiterStore(bus, limits(**given))

    return make


@pytest.fixture
def make_quotas(bus: Bus) -> MakeQuotas:
    def make(**given: Any) -> QuotaStore:
        return QuotaStore(bus, quotas(**given))

    return make


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


# -- what the property tests of both stores draw from ----------------------------------


def maybe(limits: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A limit, or now and then none (unlimited)."""
    return st.one_of(st.none(), limits, limits, limits)


def dollars(most_mills: int) -> st.SearchStrategy[float]:
    """Amounts of money in whole tenths of a cent, up to ``most_mills`` of them."""
    return st.integers(min_value=0, max_value=most_mills).map(lambda c: c / 1000)


# A request's tokens and cost; request ids, a few of them reused.
sizes = st.tuples(st.integers(0, 400), dollars(60))
rids = st.sampled_from([f"r{i}" for i in range(12)])

# A store, many examples, one Redis: slow by Hypothesis's measure, and on purpose.
model_settings = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
