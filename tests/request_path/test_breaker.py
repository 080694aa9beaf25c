"""Circuit breakers through the request path: open, half-open, close, Retry-After, keys."""

from __future__ import annotations

import pytest

from actors.client import Client, GenerateRequest, NoProviderAvailable
from actors.messages import BreakerClosed, BreakerHalfOpen, BreakerOpened
from actors.node import Node
from actors.providers.simulator import Simulator
from actors.routing._breaker_state import breaker_key
from actors.runtime.config import BreakerConfig
from bus import Message
from tests.conftest import eventually, until_redis_time
from tests.request_path.conftest import MakeNode

QUICK = BreakerConfig(
    window_size=4, minimum_calls=4, failure_rate_threshold=50, open_ms=600,
    half_open_calls=2, half_open_max_wait_ms=2_000, refresh_ms=200,
)  # fmt: skip


async def _collect(node_bus: object, stream: str, into: list[Message]) -> None:
    await node_bus.tail(stream, into.append)  # type: ignore[attr-defined]


async def _opened_at(node: Node, provider: str) -> int:
    """When the breaker last opened, on Redis's clock (the one its scripts read)."""
    return int(await node.bus.redis.hget(breaker_key(node.bus.names, provider), "opened_at"))


async def _open_time_over(node: Node, provider: str) -> None:
    """Wait until the breaker's open period has ended: on Redis's clock, which decides
    whether a call may go, and in this process's view, which is consulted first.
    Waiting for that, not for open_ms, whatever the machine's speed."""
    state = (await node.store.read([provider]))[provider]
    assert state.state == "open" and state.open_until_ms > 0, state
    await until_redis_time(node.bus.redis, state.open_until_ms)
    await eventually(lambda: not node.breakers.refuses(provider))


async def _ask(client: Client, **fields: object) -> object:
    try:
        return await client.generate(GenerateRequest(prompt="hi", model="openai/gpt-4o", **fields))
    except NoProviderAvailable as exc:
        return exc


async def test_opens_at_its_threshold_half_opens_and_closes(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",), breaker=QUICK,
                           provider_overrides={"max_retries": 0})  # fmt: skip
    events: list[Message] = []
    alerts: list[Message] = []
    await _collect(node.bus, node.bus.names.events, events)
    await _collect(node.bus, node.bus.names.alerts, alerts)
    client = Client(node.bus)
    simulator.state.update("openai", {"error_rate": 1})
    for _ in range(3):  # below minimum_calls: no judgement yet
        assert isinstance(await _ask(client), NoProviderAvailable)
    assert node.breakers.get("openai").state == "closed"
    await _ask(client)  # the 4th failure of 4: 100% >= 50%
    await eventually(lambda: node.breakers.get("openai").state == "open")
    await eventually(lambda: any(isinstance(e, BreakerOpened) for e in events))
    opened = next(e for e in events if isinstance(e, BreakerOpened))
    assert opened.provider == "openai" and opened.calls == 4 and opened.failure_rate == 100
    await eventually(lambda: any(isinstance(a, BreakerOpened) for a in alerts))
    calls_before = simulator.state.calls["openai"]
    refused = await _ask(client)
    assert isinstance(refused, NoProviderAvailable)
    assert refused.attempts[0].outcome == "breaker_open"
    assert simulator.state.calls["openai"] == calls_before  # not even tried
    simulator.state.update("openai", {"error_rate": 0})
    await _open_time_over(node, "openai")
    for _ in range(QUICK.half_open_calls):  # the trials
        answer = await _ask(client)
        assert not isinstance(answer, Exception), answer
    await eventually(lambda: node.breakers.get("openai").state == "closed")
    await eventually(lambda: any(isinstance(e, BreakerClosed) for e in events))
    kinds = [
        type(e) for e in events if isinstance(e, BreakerOpened | BreakerHalfOpen | BreakerClosed)
    ]
    assert kinds == [BreakerOpened, BreakerHalfOpen, BreakerClosed]


async def test_a_failed_trial_reopens(make_node: MakeNode, simulator: Simulator) -> None:
    node = await make_node(providers=("openai",), breaker=QUICK,
                           provider_overrides={"max_retries": 0})  # fmt: skip
    client = Client(node.bus)
    simulator.state.update("openai", {"error_rate": 1})
    for _ in range(4):
        await _ask(client)
    await eventually(lambda: node.breakers.get("openai").state == "open")
    await _open_time_over(node, "openai")
    failed = await _ask(client)  # the first trial fails
    assert isinstance(failed, NoProviderAvailable) and failed.attempts[0].outcome == "server_error"
    await eventually(lambda: node.breakers.get("openai").state == "open")


async def test_a_429_holds_it_open_for_its_retry_after(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",), breaker=QUICK,
                           provider_overrides={"max_retries": 0})  # fmt: skip
    client = Client(node.bus)
    simulator.state.update("openai", {"rate_limit_rate": 1, "retry_after_s": 2})
    limited = await _ask(client)
    assert isinstance(limited, NoProviderAvailable)
    assert limited.attempts[0].outcome == "rate_limited"
    await eventually(lambda: node.breakers.get("openai").state == "open")
    state = node.breakers.get("openai")
    opened_at = await _opened_at(node, "openai")
    # Open for the Retry-After (2 s), longer than its own open time (0.6 s).
    assert state.open_until_ms - opened_at == 2_000
    simulator.state.update("openai", {"rate_limit_rate": 0})
    # Its own open time is over (on the clock its scripts read); the Retry-After is not
    # (1.4 s of room for one refused call).
    await until_redis_time(node.bus.redis, opened_at + QUICK.open_ms)
    refused = await _ask(client)
    assert isinstance(refused, NoProviderAvailable)
    assert refused.attempts[0].outcome == "breaker_open"
    assert refused.retry_after is not None and refused.retry_after > 0  # not over yet
    await _open_time_over(node, "openai")
    assert not isinstance(await _ask(client), Exception)


async def test_a_later_failure_extends_never_shortens(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",), breaker=QUICK)
    store = node.store
    await store.record("openai", "fail", kind="rate_limited", retry_after=5)
    long_until = (await store.read(["openai"]))["openai"].open_until_ms
    await store.record("openai", "fail")  # open_ms is 0.6 s: must not pull 5 s in
    assert (await store.read(["openai"]))["openai"].open_until_ms == long_until
    await store.record("openai", "fail", kind="rate_limited", retry_after=9)
    assert (await store.read(["openai"]))["openai"].open_until_ms >= long_until + 3_900


async def test_a_rejected_key_stays_refused_until_reset(
    make_node: MakeNode, simulator: Simulator
) -> None:
    node = await make_node(providers=("openai",), breaker=QUICK)
    client = Client(node.bus)
    simulator.state.update("openai", {"auth_failure": True})
    first = await _ask(client)
    assert isinstance(first, NoProviderAvailable)
    assert first.attempts[0].outcome == "authentication"
    await eventually(lambda: node.breakers.get("openai").key_invalid)
    simulator.state.update("openai", {"auth_failure": False})
    # No timer frees it: past the time an open_ms timer would have ended (on the clock
    # its scripts read), it still refuses. A slower machine only waits longer here,
    # which makes the point no weaker.
    await until_redis_time(node.bus.redis, await _opened_at(node, "openai") + QUICK.open_ms + 100)
    refused = await _ask(client)
    assert isinstance(refused, NoProviderAvailable)
    assert refused.attempts[0].outcome == "key_invalid"
    await node.store.reset("openai")
    await node.breakers.refresh()
    assert not isinstance(await _ask(client), Exception)


async def test_a_breaker_opened_in_one_process_is_seen_by_another(
    make_node: MakeNode, simulator: Simulator
) -> None:
    first = await make_node(providers=("openai",), breaker=QUICK)
    # Another worker process (a gateway-only one keeps no view: it routes nothing).
    second = await make_node(providers=("openai",), role="worker", breaker=QUICK)
    await first.store.force_open("openai", "tested")
    await first.store.announce("openai", "opened", reason="tested", forced=True)
    # The event brings it (usually in milliseconds; the re-read every refresh_ms would too).
    await eventually(lambda: second.breakers.refuses("openai"))
    await first.store.reset("openai")  # without an event: the periodic re-read finds it
    await eventually(lambda: not second.breakers.refuses("openai"))


@pytest.mark.parametrize("window_type", ["count", "time"])
async def test_bad_requests_do_not_count(
    make_node: MakeNode, simulator: Simulator, window_type: str
) -> None:
    config = BreakerConfig(window_type=window_type, window_size=4, minimum_calls=2, open_ms=600)  # type: ignore[arg-type]
    node = await make_node(providers=("openai",), breaker=config)
    for _ in range(6):
        moved = await node.store.record("openai", "neutral")
        assert moved.moved == ""
    assert (await node.store.read(["openai"]))["openai"].state == "closed"
    await node.store.record("openai", "ok")
    moved = await node.store.record("openai", "fail")
    assert moved.moved == "opened" and moved.calls == 2 and moved.failure_rate == 50


async def test_scripts_are_reloaded_when_redis_forgot_them(make_node: MakeNode) -> None:
    node = await make_node(providers=("openai",), breaker=QUICK)
    await node.bus.redis.script_flush()  # as after a Redis restart
    moved = await node.store.record("openai", "ok")
    assert moved.state == "closed" and moved.calls == 1
    await node.bus.redis.script_flush()
    decision = await node.store.acquire("openai")
    assert decision.verdict == "allow"
