"""The streams of the limits' actors and the cache, which the router and admin clients ask.

Beside the bus's own (``{ns}:requests``, ``{ns}:events``, ...: ``bus.Names``):

=====================  ======  ==================================================
key                    type    what
=====================  ======  ==================================================
``{ns}:limiter``       stream  admission asks and limits commands for the limiter
``{ns}:quota``         stream  admission asks and limits commands for the quota keeper
``{ns}:cache``         stream  lookups, follows and cache commands for the cache
``{ns}:health``        stream  health commands for the health desks
``{ns}:metrics``       stream  metrics commands for the metrics actors
``{ns}:keys``          stream  client key commands for the keyrings
=====================  ======  ==================================================
"""

from __future__ import annotations

from collections.abc import Sequence

from bus import Names

__all__ = [
    "actor_streams",
    "cache_stream",
    "health_stream",
    "keys_stream",
    "limiter_stream",
    "metrics_stream",
    "quota_stream",
]


def limiter_stream(names: Names) -> str:
    return f"{names.ns}:limiter"


def quota_stream(names: Names) -> str:
    return f"{names.ns}:quota"


def cache_stream(names: Names) -> str:
    return f"{names.ns}:cache"


def health_stream(names: Names) -> str:
    return f"{names.ns}:health"


def metrics_stream(names: Names) -> str:
    return f"{names.ns}:metrics"


def keys_stream(names: Names) -> str:
    return f"{names.ns}:keys"


def actor_streams(names: Names, providers: Sequence[str]) -> list[str]:
    """Every stream that consumer groups read: the bus's own, the actors' and each
    provider's breaker's (the replies aside: each process reads its own, in no group)."""
    return [names.requests, names.events, names.alerts, limiter_stream(names),
            quota_stream(names), cache_stream(names), health_stream(names),
            metrics_stream(names), keys_stream(names), names.echo,
            *(names.calls(provider) for provider in providers)]  # fmt: skip
