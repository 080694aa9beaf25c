"""Alerts on ``{ns}:alerts``: every field, one per user, limit and window, and the
``Alerts`` iterator in both of its ways of listening."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import msgspec
import pytest

from actors.alerts import Alerts
from actors.client import Client, GenerateRequest, QuotaError, RateLimitError
from actors.messages import BurstDetected, QuotaExceeded, QuotaWarning, RateLimitExceeded
from bus import Message
from tests.conftest import PATIENCE
from tests.limits.conftest import limits, quotas, user
from tests.request_path.conftest import MakeNode


async def _take(alerts: Alerts, count: int) -> list[Message]:
    return [await asyncio.wait_for(anext(alerts), PATIENCE) for _ in range(count)]


async def _refused(
    client: Client, uid: str, count: int, **fields: Any
) -> list[RateLimitError | QuotaError]:
    errors: list[RateLimitError | QuotaError] = []
    for i in range(count):
        try:
            await client.generate(GenerateRequest(prompt=f"q{i}", user_id=uid, **fields))
        except (RateLimitError, QuotaError) as exc:
            errors.append(exc)
    return errors


def _recent(ts: str) -> bool:
    moment = dt.datetime.fromisoformat(ts)
    return abs((dt.datetime.now(dt.UTC) - moment).total_seconds()) < 60


async def test_a_rate_limit_alert_has_every_field_and_comes_once(make_node: MakeNode) -> None:
    node = await make_node(providers=("openai",), limits=limits(requests_per_minute=2))
    client, uid = Client(node.bus), user()
    async with Alerts(node.bus) as alerts:
        errors = await _refused(client, uid, 5)
        assert len(errors) == 3
        (alert,) = await _take(alerts, 1)
        assert isinstance(alert, RateLimitExceeded)
        fields = msgspec.structs.asdict(alert)
        assert set(fields) >= {"user_id", "limit_type", "limit", "current", "window_s",
                               "retry_after_s", "request_id", "ts"}  # fmt: skip
        assert (alert.user_id, alert.limit_type, alert.limit, alert.current) == (
            uid, "requests_per_minute", 2, 2,
        )  # fmt: skip
        assert alert.window_s == 60 and alert.retry_after_s is not None
        assert 0 < alert.retry_after_s <= 60
        assert alert.request_id == errors[0].failed.request_id and _recent(alert.ts)
        assert alert.rejections == 1
        with pytest.raises(TimeoutError):  # the other two refusals: no alert flood
            await asyncio.wait_for(anext(alerts), 0.5)


async def test_a_burst_is_refused_and_reported(make_node: MakeNode) -> None:
    """More than 5 requests within 10 s (the defaults) is a burst."""
    burst = limits(burst_limit=5, burst_window_ms=10_000)
    node = await make_node(providers=("openai",), limits=burst)
    client, uid = Client(node.bus), user()
    async with Alerts(node.bus, types={"rate-limit.exceeded", "burst.detected"}) as alerts:
        errors = await _refused(client, uid, 7)
        assert len(errors) == 2 and {e.limit_type for e in errors} == {"burst"}
        exceeded, detected = await _take(alerts, 2)
    assert isinstance(exceeded, RateLimitExceeded) and exceeded.limit_type == "burst"
    assert isinstance(detected, BurstDetected)
    assert (detected.user_id, detected.limit, detected.current, detected.window_s) == (
        uid, 5, 5, 10,
    )  # fmt: skip
    assert detected.request_id == exceeded.request_id == errors[0].failed.request_id
    assert detected.retry_after_s is not None and 0 < detected.retry_after_s <= 10


async def test_quota_alerts_warn_then_refuse(make_node: MakeNode) -> None:
    node = await make_node(
        providers=("openai",), quota=quotas(daily_request_limit=2, warning_share=0.5)
    )
    client, uid = Client(node.bus), user()
    async with Alerts(node.bus, types={"quota.warning", "quota.exceeded"}) as alerts:
        errors = await _refused(client, uid, 4, session_id="chat-1")
        assert len(errors) == 2 and all(isinstance(e, QuotaError) for e in errors)
        warning, exceeded = await _take(alerts, 2)
    assert isinstance(warning, QuotaWarning)
    assert (warning.quota_type, warning.limit, warning.current, warning.share) == (
        "daily_requests", 2, 1, 0.5,
    )  # fmt: skip
    assert isinstance(exceeded, QuotaExceeded)
    fields = msgspec.structs.asdict(exceeded)
    assert set(fields) >= {"user_id", "quota_type", "limit", "current", "period", "resets_at",
                           "request_id", "ts"}  # fmt: skip
    assert (exceeded.user_id, exceeded.quota_type, exceeded.limit, exceeded.current) == (
        uid, "daily_requests", 2, 2,
    )  # fmt: skip
    assert exceeded.period == "daily" and exceeded.session_id == "chat-1"
    resets = dt.datetime.fromisoformat(exceeded.resets_at)
    assert resets.time() == dt.time(0) and resets > dt.datetime.now(dt.UTC)
    assert exceeded.request_id == errors[0].failed.request_id and _recent(exceeded.ts)
    assert errors[0].retry_after is not None  # until midnight


async def test_a_group_gets_what_was_published_while_nobody_listened(
    make_node: MakeNode,
) -> None:
    node = await make_node(providers=("openai",), limits=limits(requests_per_minute=0))
    client = Client(node.bus)
    async with Alerts(node.bus, group="pager") as alerts:
        pass  # the group exists from here on
    users = [user() for _ in range(3)]
    for uid in users:
        await _refused(client, uid, 1)
    async with Alerts(node.bus, group="pager") as alerts:
        first = await _take(alerts, 1)
        # Left normally after the first: it was handled; the next two were not yet
        # asked for, and stay with the group.
    async with Alerts(node.bus, group="pager") as alerts:
        rest = await _take(alerts, 2)
    assert [a.user_id for a in first + rest] == users  # type: ignore[attr-defined]


async def test_an_alert_the_reader_failed_on_comes_again(make_node: MakeNode) -> None:
    node = await make_node(providers=("openai",), limits=limits(requests_per_minute=0))
    client, uid = Client(node.bus), user()
    await _refused(client, uid, 1)
    with pytest.raises(RuntimeError, match="pager down"):
        async with Alerts(node.bus, group="pager", start="0") as alerts:
            async for alert in alerts:
                assert alert.user_id == uid  # type: ignore[attr-defined]
                raise RuntimeError("pager down")
    async with Alerts(node.bus, group="pager") as alerts:  # once claimed back: again
        (again,) = await _take(alerts, 1)
    assert again.user_id == uid  # type: ignore[attr-defined]
