"""A Redis Streams bus: typed messages, consumer groups, request/reply.

It knows nothing of LLMs. Use::

    codec = Codec([Ping, Pong])
    async with Bus(redis_url, codec) as bus:
        sub = bus.subscribe("aio:ping", "pingers", handle, concurrency=8)
        await sub.start()
        pong = await bus.ask("aio:ping", Ping(), timeout=1.0)
"""

from ._aio import Backoff, cancel_and_wait
from ._bus import Bus
from ._cluster import cluster_seeds, is_cluster_url, sync_client
from ._codec import Codec, Envelope, Failure, Message, added_ms, trace_context
from ._config import BusConfig, StreamConfig
from ._embedded import EmbeddedRedis, die_with_parent, find_redis_server
from ._errors import (
    REDIS_DOWN,
    AskTimeout,
    BusError,
    BusUnavailable,
    DecodeError,
    Rejected,
    RemoteError,
    Stopped,
)
from ._inspect import DeadLetter, GroupInfo, StreamInfo
from ._names import Names, user_tag
from ._scripts import call as call_script
from ._scripts import lua_source
from ._subscription import DEFERRED, Deferred, Delivery, Handler, Subscription
from ._tail import Tail, TailHandler

__all__ = [
    "DEFERRED",
    "REDIS_DOWN",
    "AskTimeout",
    "Backoff",
    "Bus",
    "BusConfig",
    "BusError",
    "BusUnavailable",
    "Codec",
    "DeadLetter",
    "DecodeError",
    "Deferred",
    "Delivery",
    "EmbeddedRedis",
    "Envelope",
    "Failure",
    "GroupInfo",
    "Handler",
    "Message",
    "Names",
    "Rejected",
    "RemoteError",
    "Stopped",
    "StreamConfig",
    "StreamInfo",
    "Subscription",
    "Tail",
    "TailHandler",
    "added_ms",
    "call_script",
    "cancel_and_wait",
    "cluster_seeds",
    "die_with_parent",
    "find_redis_server",
    "is_cluster_url",
    "lua_source",
    "sync_client",
    "trace_context",
    "user_tag",
]
