"""The composition root: each role builds what it runs; state is changed by its owner."""

from __future__ import annotations

import pytest

from actors.admin import Admin, AdminRefusedError
from actors.messages import BreakerOpened, LimitsCommand, LimitsReport, quota_stream
from bus import Message
from tests.conftest import PATIENCE, eventually
from tests.request_path.conftest import MakeNode


async def test_a_gateway_process_runs_no_actor_and_no_store(make_node: MakeNode) -> None:
    node = await make_node(providers=("openai",), role="gateway")
    assert node.gateway is not None and node.supervisor is None
    built = set(vars(node))  # the stores and the breaker view are built on first use only
    assert not built & {"limits", "quotas", "store", "breakers"}
    assert node.bus._subscriptions == [] and node.bus._tails == []


async def test_limits_are_administered_over_the_bus(make_node: MakeNode) -> None:
    """What the HTTP admin API does, any bus client can: the owners answer."""
    node = await make_node(providers=("openai",), role="worker")
    admin = Admin(node.bus, node.enabled, timeout_s=PATIENCE)
    report = await admin.limits("limiter", "config", "ann", changes={"requests_per_minute": 7})
    assert report.config["requests_per_minute"] == 7
    assert {r.limit_type: r.limit for r in report.limits}["requests_per_minute"] == 7
    report = await admin.limits("quota", "config", "ann", changes={"daily_request_limit": 3})
    assert report.config["daily_request_limit"] == 3
    with pytest.raises(AdminRefusedError, match="requests_per_minute"):
        await admin.limits("limiter", "config", "ann", changes={"requests_per_minute": 0.5})
    assert (await node.limits.config_of("ann"))["requests_per_minute"] == 7  # untouched
    raw = LimitsCommand(action="usage", user_id="ann")
    answer = await node.bus.ask(quota_stream(node.bus.names), raw, PATIENCE)
    assert isinstance(answer, LimitsReport) and answer.quotas


async def test_a_breaker_moved_by_its_owner_announces_it(make_node: MakeNode) -> None:
    node = await make_node(providers=("openai",), role="worker")
    seen: list[Message] = []
    await node.bus.tail(node.bus.names.events, seen.append)
    admin = Admin(node.bus, node.enabled, timeout_s=PATIENCE)
    report = await admin.breaker("openai", "open")
    assert report.state == "open" and report.forced_open
    await eventually(lambda: any(isinstance(m, BreakerOpened) and m.forced for m in seen))
    assert node.breakers.refuses("openai")  # its own view learned it at once
    assert (await admin.breaker("openai", "reset")).state == "closed"
    assert [r.state for r in await admin.breakers()] == ["closed"]
