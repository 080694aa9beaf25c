"""A Redis Streams bus: typed messages, consumer groups, request/reply.

It knows nothing of LLMs. Use::

    codec = Codec([Ping, Pong])
    async with Bus(redis_url, codec) as bus:
        sub = bus.subscribe("aio:ping", "pingers", handle, concurrency=8)
        await sub.start()
        pong = await bus.ask("aio:ping", Ping(), timeout=1.0)
"""

from bus._aio import Backoff, cancel_and_wait
from bus._bus import Bus
from bus._codec import Codec, Envelope, Failure, Message, added_ms
from bus._config import BusConfig, StreamConfig
from bus._embedded import EmbeddedRedis, find_redis_server
from bus._errors import (
    REDIS_DOWN,
    AskTimeout,
    BusError,
    BusUnavailable,
    DecodeError,
    Rejected,
    RemoteError,
    Stopped,
)
from bus._names import Names
from bus._scripts import call as call_script
from bus._scripts import lua_source
from bus._subscription import Delivery, Handler, Subscription
from bus._tail import Tail, TailHandler

__all__ = [
    "REDIS_DOWN",
    "AskTimeout",
    "Backoff",
    "Bus",
    "BusConfig",
    "BusError",
    "BusUnavailable",
    "Codec",
    "DecodeError",
    "Delivery",
    "EmbeddedRedis",
    "Envelope",
    "Failure",
    "Handler",
    "Message",
    "Names",
    "Rejected",
    "RemoteError",
    "Stopped",
    "StreamConfig",
    "Subscription",
    "Tail",
    "TailHandler",
    "added_ms",
    "call_script",
    "cancel_and_wait",
    "find_redis_server",
    "lua_source",
]
