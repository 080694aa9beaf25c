"""The bus's errors: one root, a leaf per way a caller can fail."""

from __future__ import annotations

import redis.exceptions

__all__ = [
    "REDIS_DOWN",
    "AskTimeout",
    "BusError",
    "BusUnavailable",
    "DecodeError",
    "NotSent",
    "Rejected",
    "RemoteError",
    "Stopped",
]


class BusError(Exception):
    """Root of every error the bus raises."""


class BusUnavailable(BusError, ConnectionError):
    """Redis did not answer within the configured time; nothing was published.

    From an ask: the message was not published and will not be acted on (see
    ``Bus.ask``), so sending it again is safe.
    """


class NotSent(redis.exceptions.ConnectionError):
    """No connection to Redis could be made: not a byte of the commands went out."""


class AskTimeout(BusError, TimeoutError):
    """No reply arrived before the ask's deadline."""

    def __init__(self, stream: str, timeout: float) -> None:
        super().__init__(f"no reply from {stream} within {timeout:.3f}s")
        self.stream = stream
        self.timeout = timeout


class DecodeError(BusError, ValueError):
    """A stream entry is not a message this codec knows."""


class RemoteError(BusError):
    """The consumer answered an ask with a failure instead of a reply.

    ``kind`` says why: ``dead_letter`` (it failed too often), ``stopped`` (its actor
    stopped before it finished), ``no_reply`` (its handler returned nothing).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Rejected(BusError):
    """A handler refuses a message for good (a type it does not take, on a stream it
    does not own): the entry goes to the dead-letter stream at once, with this reason,
    instead of being retried."""


class Stopped(BusError):
    """The bus or subscription was stopped while the call was pending."""


# What a Redis call raises when the server cannot be reached or does not answer.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    # redis-py's cluster client when no node of a cluster can be reached.
    redis.exceptions.RedisClusterException,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)
