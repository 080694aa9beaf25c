"""The bus contract, against each real Redis server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio
from structlog.testing import capture_logs

from bus import (
    DEFERRED,
    AskTimeout,
    Bus,
    BusConfig,
    BusUnavailable,
    Codec,
    Deferred,
    Delivery,
    Message,
    Rejected,
    RemoteError,
    StreamConfig,
)
from tests.conftest import FAST, PATIENCE, MakeBus, eventually


class Job(Message, tag="test.job", frozen=True, kw_only=True):
    n: int = 0
    sleep: float = 0.0
    fail: bool = False


class Done(Message, tag="test.done", frozen=True, kw_only=True):
    n: int


CODEC = Codec([Job, Done])


class Recorder:
    """A handler that records what it saw and how many ran at once."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.deliveries: list[Delivery] = []
        self.active = 0
        self.max_active = 0

    async def __call__(self, message: Message, delivery: Delivery) -> Message | None:
        assert isinstance(message, Job)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.deliveries.append(delivery)
        try:
            if message.sleep:
                await asyncio.sleep(message.sleep)
            if message.fail:
                raise ValueError(f"boom {message.n}")
            self.seen.append(message.n)
            return Done(n=message.n)
        finally:
            self.active -= 1


async def test_publish_and_consume_in_order(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    for n in range(50):
        await bus.publish(stream, Job(n=n))
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler, concurrency=1)
    await sub.start()
    await eventually(lambda: len(handler.seen) == 50)
    assert handler.seen == list(range(50))
    await sub.stop(1.0)
    pending = await bus.redis.xpending(stream, "workers")
    assert pending["pending"] == 0


async def test_ask_returns_the_reply(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    sub = bus.subscribe(stream, "workers", Recorder(), concurrency=4)
    await sub.start()
    replies = await asyncio.gather(
        *(bus.ask(stream, Job(n=n), timeout=PATIENCE) for n in range(20))
    )
    assert replies == [Done(n=n) for n in range(20)]
    await sub.stop(1.0)


async def test_ask_all_sends_several_asks_at_once(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    served, failing, silent = (f"{bus.names.ns}:{name}" for name in ("a", "b", "c"))
    for stream in (served, failing):
        await bus.subscribe(stream, "workers", Recorder(), concurrency=4).start()
    # One timeout for all: long enough for the served ones on a slow machine, shorter
    # than the failing one's way to the dead letters (5 deliveries, claim_idle_ms apart).
    answers = await bus.ask_all(
        [(served, Job(n=1)), (failing, Job(n=2, fail=True)), (silent, Job(n=3)),
         (served, Job(n=4))],
        timeout=3.0,
    )  # fmt: skip
    assert answers[0] == Done(n=1) and answers[3] == Done(n=4)
    assert isinstance(answers[1], AskTimeout)  # its handler raised: no reply in time
    assert isinstance(answers[2], AskTimeout)  # nobody listens there
    assert len(await bus.redis.xrange(served)) == 2  # each ask one entry


async def test_ask_across_processes_shares_the_work(make_bus: MakeBus) -> None:
    asker = await make_bus(CODEC, node_prefix="asker")
    workers = [await make_bus(CODEC, node_prefix=f"worker{i}") for i in range(2)]
    stream = f"{asker.names.ns}:jobs"
    handlers = [Recorder(), Recorder()]
    subs = [
        w.subscribe(stream, "workers", h, concurrency=8)
        for w, h in zip(workers, handlers, strict=True)
    ]
    for sub in subs:
        await sub.start()
    replies = await asyncio.gather(
        *(asker.ask(stream, Job(n=n, sleep=0.01), timeout=PATIENCE) for n in range(100))
    )
    assert sorted(r.n for r in replies if isinstance(r, Done)) == list(range(100))
    assert sorted(handlers[0].seen + handlers[1].seen) == list(range(100))
    assert handlers[0].seen and handlers[1].seen
    for sub in subs:
        await sub.stop(1.0)


async def test_a_deferred_ask_is_answered_later_by_another_process(make_bus: MakeBus) -> None:
    asker = await make_bus(CODEC, node_prefix="asker")
    holder = await make_bus(CODEC, node_prefix="holder")
    answerer = await make_bus(CODEC, node_prefix="answerer")
    stream = f"{asker.names.ns}:jobs"
    held: list[Delivery] = []

    async def hold(message: Message, delivery: Delivery) -> Message | Deferred | None:
        held.append(delivery)
        return DEFERRED  # acknowledged; the reply comes from elsewhere

    sub = holder.subscribe(stream, "workers", hold)
    await sub.start()
    asked = asyncio.create_task(asker.ask(stream, Job(n=7), timeout=PATIENCE))
    await eventually(lambda: held)
    await eventually(lambda: _acked(holder, stream))  # taken: never redelivered
    assert not asked.done()
    delivery = held[0]
    assert delivery.reply_to is not None
    await answerer.reply(delivery.reply_to, delivery.correlation_id, Done(n=7))
    assert await asked == Done(n=7)
    await sub.stop(1.0)


async def _acked(bus: Bus, stream: str) -> bool:
    return (await bus.redis.xpending(stream, "workers"))["pending"] == 0


async def test_ask_times_out_and_the_late_entry_is_dropped(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    with pytest.raises(AskTimeout) as caught:
        await bus.ask(stream, Job(n=1), timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler)
    with capture_logs() as logs:
        await sub.start()
        await eventually(lambda: any(e["event"] == "bus.expired" for e in logs))
    assert handler.seen == []  # its asker had gone: the work is not done
    await eventually(lambda: _pending(bus, stream, "workers", 0))
    await sub.stop(1.0)


async def test_late_and_duplicate_replies_are_dropped(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler)
    await sub.start()
    # The handler outlives the ask: its reply comes late however fast the machine is,
    # as long as the entry is read before its deadline (which has room for that).
    ask = asyncio.create_task(bus.ask(stream, Job(n=1, sleep=2.0), timeout=1.5))
    await eventually(lambda: handler.active == 1)
    with pytest.raises(AskTimeout):
        await ask
    await eventually(lambda: bus.dropped_replies == 1)
    # A stray reply with a correlation id nobody waits for.
    await bus.redis.xadd(bus.reply_stream, CODEC.fields(Done(n=9), correlation_id="nobody"))
    await eventually(lambda: bus.dropped_replies == 2)
    assert await bus.ask(stream, Job(n=2), timeout=PATIENCE) == Done(n=2)
    await sub.stop(1.0)


async def test_concurrency_bound_holds(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler, concurrency=3)
    await sub.start()
    await asyncio.gather(
        *(bus.ask(stream, Job(n=n, sleep=0.05), timeout=PATIENCE) for n in range(20))
    )
    assert handler.max_active == 3
    assert sorted(handler.seen) == list(range(20))
    await sub.stop(1.0)


async def test_graceful_stop_drains_in_flight_work(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler, concurrency=4)
    await sub.start()
    # Each runs for a second: time enough to see all four in flight on a slow machine.
    asks = [
        asyncio.create_task(bus.ask(stream, Job(n=n, sleep=1.0), timeout=PATIENCE))
        for n in range(4)
    ]
    await eventually(lambda: handler.active == 4)
    await sub.stop(timeout=PATIENCE)
    assert [await a for a in asks] == [Done(n=n) for n in range(4)]
    await eventually(lambda: _pending(bus, stream, "workers", 0))


async def test_stop_past_its_deadline_fails_the_asker(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler, concurrency=2)
    await sub.start()
    ask = asyncio.create_task(bus.ask(stream, Job(n=1, sleep=30), timeout=20))
    await eventually(lambda: handler.active == 1)
    await sub.stop(timeout=0.2)
    with pytest.raises(RemoteError) as caught:
        await asyncio.wait_for(ask, 15)
    assert caught.value.kind == "stopped"
    await eventually(lambda: _pending(bus, stream, "workers", 0))


async def test_failed_handler_is_retried_then_dead_lettered(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC, max_deliveries=2)
    stream = f"{bus.names.ns}:jobs"
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler, concurrency=2)
    await sub.start()
    with pytest.raises(RemoteError) as caught:
        await bus.ask(stream, Job(n=7, fail=True), timeout=PATIENCE)
    assert caught.value.kind == "dead_letter"
    assert "ValueError: boom 7" in caught.value.message
    assert [d.deliveries for d in handler.deliveries] == [1, 2]
    dead = await bus.redis.xrange(bus.names.dead)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"reason"].startswith(b"failed 2 deliveries; last error: ValueError: boom 7")
    assert fields[b"source_stream"] == stream.encode()
    assert fields[b"type"] == b"test.job"  # the original fields travel along
    assert CODEC.decode(fields).message == Job(n=7, fail=True)
    # The consumer keeps going.
    assert await bus.ask(stream, Job(n=8), timeout=PATIENCE) == Done(n=8)
    await eventually(lambda: _pending(bus, stream, "workers", 0))
    await sub.stop(1.0)


async def test_poison_entry_goes_to_dead_letters_and_the_consumer_continues(
    make_bus: MakeBus,
) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler)
    await sub.start()
    await bus.redis.xadd(stream, {"type": "test.job", "data": "{not json"})
    await bus.redis.xadd(stream, {"garbage": "1"})
    await bus.redis.xadd(stream, {"type": "no.such.type", "data": "{}"})
    assert await bus.ask(stream, Job(n=1), timeout=PATIENCE) == Done(n=1)
    dead = await eventually(lambda: _dead(bus, 3))
    reasons = [fields[b"reason"].decode() for _id, fields in dead]
    assert reasons[0].startswith("undecodable: bad data for 'test.job'")
    assert reasons[1] == "undecodable: entry has no 'type' field"
    assert reasons[2] == "undecodable: unknown message type 'no.such.type'"
    assert dead[1][1][b"garbage"] == b"1"
    assert handler.seen == [1]
    await eventually(lambda: _pending(bus, stream, "workers", 0))
    await sub.stop(1.0)


async def test_an_oversize_entry_is_dead_lettered_unread_with_its_data_cut(
    make_bus: MakeBus,
) -> None:
    bus = await make_bus(CODEC, max_entry_bytes=4096)
    stream = f"{bus.names.ns}:jobs"
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler)
    await sub.start()
    huge = json.dumps({"type": "test.job", "n": 7, "pad": "x" * 10_000})
    await bus.redis.xadd(stream, {"type": "test.job", "data": huge})
    assert await bus.ask(stream, Job(n=1), timeout=PATIENCE) == Done(n=1)  # it goes on
    ((_id, fields),) = await eventually(lambda: _dead(bus, 1))
    assert fields[b"reason"].decode().startswith("oversize: 10")
    assert "bus.max_entry_bytes (4096)" in fields[b"reason"].decode()
    assert fields[b"data"] == huge.encode()[:1024]  # enough to tell what it was
    assert handler.seen == [1]  # never decoded nor handled
    await eventually(lambda: _pending(bus, stream, "workers", 0))
    await sub.stop(1.0)


async def test_a_rejected_message_is_dead_lettered_at_once(make_bus: MakeBus) -> None:
    """A handler that says it will never take a message: no retries, no tracebacks."""
    bus = await make_bus(CODEC, max_deliveries=5)
    stream = f"{bus.names.ns}:jobs"
    calls = 0

    async def picky(message: Message, delivery: Delivery) -> Message | None:
        nonlocal calls
        calls += 1
        raise Rejected(f"not a job for {delivery.stream}")

    sub = bus.subscribe(stream, "workers", picky)
    await sub.start()
    with capture_logs() as logs, pytest.raises(RemoteError) as caught:
        await bus.ask(stream, Job(n=1), timeout=15)
    assert caught.value.kind == "dead_letter"
    assert caught.value.message == f"rejected: not a job for {stream}"
    assert calls == 1
    (dead,) = await eventually(lambda: _dead(bus, 1))
    assert dead[1][b"reason"] == f"rejected: not a job for {stream}".encode()
    assert dead[1][b"deliveries"] == b"1"
    assert not any(e["event"] == "bus.handler_failed" for e in logs)
    await eventually(lambda: _pending(bus, stream, "workers", 0))
    await sub.stop(1.0)


async def test_an_ask_added_after_its_publish_by_is_dropped_unread(make_bus: MakeBus) -> None:
    """Its publisher gave up on the write (and told its caller so): nobody acts on it."""
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    handler = Recorder()
    sub = bus.subscribe(stream, "workers", handler)
    await sub.start()
    given_up = bus.now_ms() - 1_000
    late = CODEC.fields(Job(n=1), correlation_id="c", reply_to=bus.reply_stream,
                        publish_by_ms=given_up)  # fmt: skip
    in_time = CODEC.fields(Job(n=2), publish_by_ms=bus.now_ms() + 60_000)
    with capture_logs() as logs:
        await bus.redis.xadd(stream, late)  # type: ignore[arg-type]
        await bus.redis.xadd(stream, in_time)  # type: ignore[arg-type]
        await eventually(lambda: handler.seen == [2])
    assert [e["event"] for e in logs].count("bus.published_too_late") == 1
    await eventually(lambda: _pending(bus, stream, "workers", 0))
    assert await bus.redis.xlen(bus.reply_stream) == 0  # and no reply to the late one
    await sub.stop(1.0)


async def test_an_ask_across_a_stuck_loop_is_answered_or_never_acted_on(
    make_bus: MakeBus,
) -> None:
    """The asker's event loop is stuck past the socket timeout around its write. Whatever
    Redis did meanwhile, the asker gets the replies (Redis took the writes in time), or
    BusUnavailable and then nobody ever acts on them (it took them late): never a
    BusUnavailable for work that runs, never a silent drop."""
    asker, worker = await make_bus(CODEC), await make_bus(CODEC)
    stream = f"{asker.names.ns}:jobs"
    handler = Recorder()
    sub = worker.subscribe(stream, "workers", handler)
    await sub.start()
    assert await asker.ask(stream, Job(n=0), timeout=PATIENCE) == Done(n=0)  # connected
    asks = [(stream, Job(n=1)), (stream, Job(n=2))]  # two: one pipelined round trip
    ask = asyncio.create_task(asker.ask_all(asks, PATIENCE))
    await asyncio.sleep(0)  # the ask's first step (its write) runs, then this
    time.sleep(1.5 * FAST.command_timeout_ms / 1000)  # noqa: ASYNC251 - the point
    try:
        answers = await ask
    except BusUnavailable:
        await eventually(lambda: _pending(worker, stream, "workers", 0))
        await eventually(lambda: _read_all(worker, stream, "workers"))
        assert handler.seen == [0]  # they reached the stream late: nobody ran them
    else:
        assert answers == [Done(n=1), Done(n=2)]
    await sub.stop(1.0)


async def test_an_ask_redis_dates_after_its_publish_by_fails_at_once(make_bus: MakeBus) -> None:
    """A stream whose ids run ahead of Redis's clock (an entry dated in the future):
    every ask added there would be dropped unread, so the asker says so at once."""
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    await bus.redis.xadd(stream, {"note": "from the future"}, id=f"{bus.now_ms() + 60_000}-0")
    started = asyncio.get_running_loop().time()
    with pytest.raises(BusUnavailable, match="after its publish_by"):
        await bus.ask(stream, Job(n=1), timeout=PATIENCE)
    assert asyncio.get_running_loop().time() - started < PATIENCE  # not at its timeout


async def test_garbage_on_a_reply_stream_is_logged_and_dropped(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    sub = bus.subscribe(stream, "workers", Recorder())
    await sub.start()
    with capture_logs() as logs:
        await bus.redis.xadd(bus.reply_stream, {"hello": "world"})
        await bus.redis.xadd(bus.reply_stream, {"type": "no.such.type", "corr": "x"})
        await eventually(lambda: sum(e["event"] == "bus.reply_garbage" for e in logs) == 2)
    assert [e["fields"] for e in logs if e["event"] == "bus.reply_garbage"] == [
        ["hello"],
        ["corr", "type"],
    ]
    assert await bus.ask(stream, Job(n=1), timeout=10) == Done(n=1)  # replies still flow
    await sub.stop(1.0)


async def test_a_lost_stream_gets_its_group_back(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC)
    stream = f"{bus.names.ns}:jobs"
    sub = bus.subscribe(stream, "workers", Recorder())
    await sub.start()
    assert await bus.ask(stream, Job(n=1), timeout=PATIENCE) == Done(n=1)
    with capture_logs() as logs:
        await bus.redis.delete(stream)  # as after a restart without persistence
        await eventually(lambda: any(e["event"] == "bus.group_recreated" for e in logs))
    recreated = next(e for e in logs if e["event"] == "bus.group_recreated")
    assert recreated["start_id"] == "0"
    assert await bus.ask(stream, Job(n=2), timeout=PATIENCE) == Done(n=2)
    assert sub.failed.done() is False
    await sub.stop(1.0)


async def test_restarts_do_not_grow_the_consumer_list(redis_url: str, ns: str) -> None:
    config = BusConfig(namespace=ns, block_ms=100, claim_interval_ms=100, claim_idle_ms=1000)
    stream = f"{ns}:jobs"
    for n in range(100):
        async with Bus(redis_url, CODEC, config) as bus:
            sub = bus.subscribe(stream, "workers", Recorder())
            await sub.start()
            if n % 25 == 0:
                assert await bus.ask(stream, Job(n=n), timeout=PATIENCE) == Done(n=n)
            await sub.stop(1.0)
    client = redis.asyncio.Redis.from_url(redis_url)
    consumers = await client.xinfo_consumers(stream, "workers")
    await client.aclose()
    assert len(consumers) == 1


async def test_idle_consumers_without_pending_entries_are_pruned(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC, prune_idle_ms=1)
    stream = f"{bus.names.ns}:jobs"
    await bus.redis.xgroup_create(stream, "workers", id="0", mkstream=True)
    await bus.redis.xgroup_createconsumer(stream, "workers", "gone-1")
    await bus.redis.xadd(stream, {"type": "test.job", "data": "{}"})
    await bus.redis.xreadgroup("workers", "gone-2", {stream: ">"})  # gone-2 holds it
    sub = bus.subscribe(stream, "workers", Recorder())
    await sub.start()
    await asyncio.sleep(0.01)
    assert await sub.prune() == ["gone-1"]
    names = {c["name"] for c in await bus.redis.xinfo_consumers(stream, "workers")}
    assert b"gone-2" in names  # a consumer with pending work stays
    assert b"gone-1" not in names
    await sub.stop(1.0)


async def test_trim_keeps_what_a_group_still_needs(make_bus: MakeBus) -> None:
    bus = await make_bus(CODEC, streams={"jobs": StreamConfig(retention_ms=1)})
    stream = f"{bus.names.ns}:jobs"
    ids = [await bus.publish(stream, Job(n=n)) for n in range(1000)]
    await bus.redis.xgroup_create(stream, "fast", id="0")
    await bus.redis.xgroup_create(stream, "slow", id="0")
    await bus.redis.xreadgroup("fast", "f", {stream: ">"}, count=1000)
    await bus.redis.xack(stream, "fast", *ids)
    await bus.redis.xreadgroup("slow", "s", {stream: ">"}, count=600)  # pending from 0
    await bus.redis.xack(stream, "slow", *ids[:500])  # still pending: 500..599; unread: 600..
    await asyncio.sleep(0.01)
    await bus.trim()
    left = [entry_id.decode() for entry_id, _f in await bus.redis.xrange(stream)]
    assert len(left) < 1000  # something went
    assert left[-500:] == ids[500:]  # nothing the slow group still needs
    await bus.redis.xack(stream, "slow", *ids[500:600])
    await bus.redis.xreadgroup("slow", "s", {stream: ">"}, count=1000)
    await bus.redis.xack(stream, "slow", *ids[600:])
    await bus.trim()
    assert await bus.redis.xlen(stream) < len(left)


async def test_publish_fails_fast_when_redis_is_unreachable(unused_tcp_port: int) -> None:
    config = BusConfig(connect_timeout_ms=200, command_timeout_ms=200)
    bus = Bus(f"redis://127.0.0.1:{unused_tcp_port}/0", CODEC, config)
    with pytest.raises(BusUnavailable):
        await asyncio.wait_for(bus.start(), 5)


async def _pending(bus: Bus, stream: str, group: str, count: int) -> bool:
    summary = await bus.redis.xpending(stream, group)
    return bool(summary["pending"] == count)


async def _read_all(bus: Bus, stream: str, group: str) -> bool:
    """The group has been delivered everything the stream holds."""
    (info,) = [g for g in await bus.redis.xinfo_groups(stream) if g["name"] == group.encode()]
    last = await bus.redis.xrevrange(stream, count=1)
    return bool(info["last-delivered-id"] == last[0][0])


async def _dead(bus: Bus, count: int) -> list[tuple[bytes, dict[bytes, bytes]]] | None:
    dead = await bus.redis.xrange(bus.names.dead)
    return dead if len(dead) >= count else None
