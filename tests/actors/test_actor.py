"""The actor runtime: lifecycle, dispatch, and the supervisor's restarts."""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

import pytest
import redis.asyncio
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from actors import CODEC, Actor, EchoActor, Ping, Pong, Supervisor
from bus import Bus, Delivery, Message, RemoteError
from tests.conftest import PATIENCE, MakeBus, eventually


async def test_echo_actor_answers_and_stops(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    actor = EchoActor(bus, concurrency=4)
    await actor.start()
    assert await bus.ask(bus.names.echo, Ping(payload="hi"), timeout=PATIENCE) == Pong(
        payload="hi", node=bus.node
    )
    await actor.stop(1.0)


async def test_a_client_without_our_code_can_ask(make_bus: MakeBus, redis_url: str) -> None:
    """What docs/bus-contract.md shows with redis-cli: plain XADD in, plain XREAD out."""
    bus = await make_bus(CODEC)
    actor = EchoActor(bus)
    await actor.start()
    replies = f"{bus.names.ns}:my:replies"
    # A plain client, as redis-cli is: no socket timeout under its blocking read (the
    # bus's own clients give up on a command after command_timeout_ms).
    plain = redis.asyncio.Redis.from_url(redis_url)
    try:
        await plain.xadd(
            bus.names.echo,
            {"type": "ping", "data": '{"payload":"hi"}', "corr": "c-1", "reply_to": replies},
        )
        response = await plain.xread({replies: "0"}, block=int(PATIENCE * 1000))
    finally:
        await plain.aclose()
    (_stream, [(_id, fields)]) = response[0]
    assert fields[b"type"] == b"pong"
    assert fields[b"corr"] == b"c-1"
    assert json.loads(fields[b"data"]) == {"type": "pong", "payload": "hi", "node": bus.node}
    await actor.stop(1.0)


async def test_an_unexpected_message_is_dead_lettered_at_once(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC, max_deliveries=5)  # not retried 5 times: it cannot succeed
    actor = EchoActor(bus)
    await actor.start()
    with pytest.raises(RemoteError, match="rejected: echo does not take Pong"):
        await bus.ask(bus.names.echo, Pong(payload="?"), timeout=PATIENCE)
    await actor.stop(1.0)


async def test_each_handled_message_is_logged_with_actor_and_request(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)

    class Noisy(EchoActor):
        async def handle(self, message: Message, delivery: Delivery) -> Message | None:
            self.log.info("noisy.handled")
            return await super().handle(message, delivery)

    actor = Noisy(bus)
    await actor.start()
    with capture_logs(processors=[merge_contextvars]) as logs:
        await bus.ask(bus.names.echo, Ping(), timeout=PATIENCE)
    line = next(e for e in logs if e["event"] == "noisy.handled")
    assert line["actor"] == "echo"
    assert line["message_id"]
    assert line["request_id"]  # the ask's correlation id when the message has none
    await actor.stop(1.0)


class Fragile(Actor):
    """Echoes, and crashes its own machinery when told to (``crash`` set)."""

    group: ClassVar[str] = "fragile"
    built: ClassVar[list[Fragile]] = []

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, stream=f"{bus.names.ns}:fragile")
        Fragile.built.append(self)
        self.generation = len(Fragile.built)
        self.crash = asyncio.Event()

    async def on_start(self) -> None:
        self.spawn(self._watch(), "watch")

    async def _watch(self) -> None:
        # Waits in this process, as long as it takes: a blocking Redis read on the bus's
        # client would give up after command_timeout_ms and crash the actor by itself.
        await self.crash.wait()
        raise RuntimeError(f"generation {self.generation} broke")

    async def handle(self, message: Message, delivery: Delivery) -> Message | None:
        assert isinstance(message, Ping)
        return Pong(payload=f"generation {self.generation}")


async def test_supervisor_restarts_a_crashed_actor_with_backoff(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    Fragile.built = []
    supervisor = Supervisor([lambda: Fragile(bus)], backoff_base=0.05, backoff_max=0.2)
    await supervisor.start()
    stream = f"{bus.names.ns}:fragile"
    assert await bus.ask(stream, Ping(), timeout=PATIENCE) == Pong(payload="generation 1")
    with capture_logs() as logs:
        Fragile.built[0].crash.set()
        await eventually(lambda: supervisor.restarts == 1)
    crashed = next(e for e in logs if e["event"] == "actor.crashed")
    assert crashed["actor"] == "fragile"
    assert "generation 1 broke" in crashed["error"]
    restarted = next(e for e in logs if e["event"] == "actor.restarted")
    assert 0.025 <= restarted["after_s"] <= 0.05  # the first backoff step, jittered
    assert await bus.ask(stream, Ping(), timeout=PATIENCE) == Pong(payload="generation 2")
    await supervisor.stop(1.0)


async def test_a_failure_at_start_reaches_the_caller(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)

    class Broken(EchoActor):
        async def on_start(self) -> None:
            raise ValueError("bad setting")

    echo_started = asyncio.Event()

    class Tracked(EchoActor):
        async def on_stop(self) -> None:
            echo_started.set()

    supervisor = Supervisor([lambda: Tracked(bus), lambda: Broken(bus)])
    with pytest.raises(ValueError, match="bad setting"):
        await supervisor.start()
    assert echo_started.is_set()  # what had started was stopped again
