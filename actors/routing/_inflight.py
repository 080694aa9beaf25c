"""The work this process does for each caller, so that a caller who went away is let go."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator

import structlog

from bus import Message

from ..messages import RequestCancelled

__all__ = ["InFlight"]

log = structlog.get_logger("inflight")

# Cancellations remembered for work that has not started yet (a request still on its
# stream when its caller left): the most recent this many.
_REMEMBERED = 10_000


class InFlight:
    """Who works on which caller's exchange (its ``cancel_key``), in this process.

    Fed with every ``{ns}:events`` entry by the node's tail: a ``request.cancelled``
    calls the ``stop`` of each piece of work tracked under its key (the router's
    request, the breaker's provider call), and is remembered a while for work on it
    that starts later.
    """

    def __init__(self) -> None:
        self._work: dict[str, list[Callable[[], None]]] = {}
        self._cancelled: collections.OrderedDict[str, None] = collections.OrderedDict()

    def on_event(self, message: Message) -> None:
        if not isinstance(message, RequestCancelled) or not message.cancel_key:
            return
        self._cancelled[message.cancel_key] = None
        if len(self._cancelled) > _REMEMBERED:
            self._cancelled.popitem(last=False)
        for stop in self._work.pop(message.cancel_key, []):
            try:
                stop()
            except Exception:  # one failing stop must not keep the others running
                log.exception("inflight.stop_failed", request_id=message.request_id)

    def cancelled(self, key: str) -> bool:
        return bool(key) and key in self._cancelled

    @contextlib.contextmanager
    def track(self, key: str, stop: Callable[[], None]) -> Iterator[None]:
        """While the block runs, ``stop()`` is called if the caller of ``key`` goes away
        (at once if it already has)."""
        if not key:
            yield
            return
        if key in self._cancelled:
            stop()
        stops = self._work.setdefault(key, [])
        stops.append(stop)
        try:
            yield
        finally:
            stops.remove(stop)
            if not stops and self._work.get(key) is stops:
                del self._work[key]
