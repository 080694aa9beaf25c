"""Streaming asks (many replies to one ask) and tails (every process sees every entry)."""

from __future__ import annotations

import asyncio

import pytest

from bus import AskTimeout, Bus, Delivery, Message, RemoteError
from tests.bus.test_bus import CODEC, Done, Job
from tests.conftest import PATIENCE, MakeBus, eventually


def _streamer(bus: Bus) -> object:
    async def handle(message: Message, delivery: Delivery) -> Message | None:
        assert isinstance(message, Job) and delivery.reply_to is not None
        for n in range(message.n):
            await bus.reply(delivery.reply_to, delivery.correlation_id, Job(n=n))
        if message.fail:
            raise ValueError("broke mid-stream")
        return Done(n=message.n)

    return handle


async def test_a_streaming_ask_yields_every_reply_in_order(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    sub = bus.subscribe(stream, "streamers", _streamer(bus), concurrency=4)  # type: ignore[arg-type]
    await sub.start()

    async def collect(count: int) -> list[Message]:
        received = []
        async for reply in bus.ask_stream(stream, Job(n=count), timeout=PATIENCE):
            received.append(reply)
            if isinstance(reply, Done):
                break
        return received

    results = await asyncio.gather(collect(50), collect(3), collect(0))
    assert results[0] == [*(Job(n=n) for n in range(50)), Done(n=50)]
    assert results[1] == [Job(n=0), Job(n=1), Job(n=2), Done(n=3)]
    assert results[2] == [Done(n=0)]
    await sub.stop(1.0)


async def test_a_streaming_ask_times_out_as_a_whole(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"

    async def slow(message: Message, delivery: Delivery) -> Message | None:
        assert delivery.reply_to is not None
        await bus.reply(delivery.reply_to, delivery.correlation_id, Job(n=0))
        await asyncio.Event().wait()  # and nothing more, until stopped
        return None

    sub = bus.subscribe(stream, "streamers", slow)
    await sub.start()
    received: list[Message] = []
    # Room for the first reply on a slow machine; the second never comes.
    with pytest.raises(AskTimeout):
        async for reply in bus.ask_stream(stream, Job(n=1), timeout=3.0):
            received.append(reply)
    assert received == [Job(n=0)]
    await sub.stop(0.1)


async def test_a_dead_lettered_streaming_ask_raises(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC, max_deliveries=1)
    stream = f"{bus.names.ns}:jobs"
    sub = bus.subscribe(stream, "streamers", _streamer(bus))  # type: ignore[arg-type]
    await sub.start()
    received: list[Message] = []
    with pytest.raises(RemoteError) as caught:
        async for reply in bus.ask_stream(stream, Job(n=2, fail=True), timeout=PATIENCE):
            received.append(reply)
    assert caught.value.kind == "dead_letter"
    assert received[:2] == [Job(n=0), Job(n=1)]  # what came before the failure arrived
    await sub.stop(1.0)


async def test_every_tail_sees_every_entry(make_bus: MakeBus) -> None:
    first = await make_bus(CODEC, node_prefix="a")
    second = await make_bus(CODEC, node_prefix="b")
    stream = f"{first.names.ns}:events"
    await first.publish(stream, Job(n=-1))  # before the tails: not seen
    seen: dict[str, list[int]] = {"a": [], "b": []}
    await first.tail(stream, lambda m: seen["a"].append(m.n))  # type: ignore[attr-defined]
    await second.tail(stream, lambda m: seen["b"].append(m.n))  # type: ignore[attr-defined]
    for n in range(20):
        await first.publish(stream, Job(n=n))
    await first.redis.xadd(stream, {"type": "garbage", "data": "{}"})  # skipped
    await first.publish(stream, Job(n=20))
    await eventually(lambda: len(seen["a"]) == 21 and len(seen["b"]) == 21)
    assert seen["a"] == seen["b"] == list(range(21))
