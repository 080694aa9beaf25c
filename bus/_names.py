"""The bus's stream names and key prefixes, under one namespace (each package of the
actors keeps its own key layout beside its Lua scripts).

Key layouts (``{ns}`` is the namespace, default ``aio``):

==============================  ======  ==============================================
key                             type    what
==============================  ======  ==============================================
``{ns}:requests``               stream  requests for the router
``{ns}:events``                 stream  facts (``request.completed``, breaker moves, ...)
``{ns}:alerts``                 stream  alerts for operators (``quota.exceeded``, ...)
``{ns}:dead``                   stream  entries that could not be decoded or failed N times
``{ns}:calls:{name}``           stream  calls for one breaker (one per provider)
``{ns}:echo``                   stream  pings for the echo actor (liveness of the bus path)
``{ns}:reply:{node}``           stream  replies for one process (expires when unused)
``{ns}:node:{node}``            string  lease on a process name (token, with a TTL)
``{ns}:errors:{stream}``        hash    last handler error per ``{group}/{entry id}``
==============================  ======  ==============================================
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

__all__ = ["Names", "user_tag"]


@functools.lru_cache(maxsize=65_536)
def user_tag(user_id: str) -> str:
    """An id (a user's) as a Redis hash tag: itself when it can be one, else a digest."""
    if user_id and len(user_id) <= 128 and not any(c in user_id for c in "{}\n "):
        return user_id
    return "#" + hashlib.sha256(user_id.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Names:
    """Stream names and key prefixes for one namespace."""

    ns: str = "aio"

    def __post_init__(self) -> None:
        if not self.ns or any(c in self.ns for c in " :{}*?[]"):
            raise ValueError(
                f"namespace {self.ns!r} must be non-empty, without spaces, ':' or braces"
            )

    @property
    def requests(self) -> str:
        return f"{self.ns}:requests"

    @property
    def events(self) -> str:
        return f"{self.ns}:events"

    @property
    def alerts(self) -> str:
        return f"{self.ns}:alerts"

    @property
    def dead(self) -> str:
        return f"{self.ns}:dead"

    @property
    def echo(self) -> str:
        return f"{self.ns}:echo"

    def calls(self, name: str) -> str:
        """The call stream of one breaker."""
        return f"{self.ns}:calls:{name}"

    def reply(self, node: str) -> str:
        """The reply stream of one process."""
        return f"{self.ns}:reply:{node}"

    def node_lease(self, node: str) -> str:
        return f"{self.ns}:node:{node}"

    def errors(self, stream: str) -> str:
        """Last handler error per entry of ``stream``, kept for the dead-letter reason."""
        return f"{self.ns}:errors:{stream}"

    def short(self, stream: str) -> str:
        """``aio:requests`` -> ``requests``: the name a stream has in config."""
        prefix = f"{self.ns}:"
        return stream[len(prefix) :] if stream.startswith(prefix) else stream

    @property
    def pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every key of the namespace."""
        return f"{self.ns}:*"
