"""What a finished request charges, from its ``request.completed`` event."""

from __future__ import annotations

from .messages import RequestCompleted

__all__ = ["REFUSED", "settlement"]

# A request refused at admission was never made: its reservations are released.
REFUSED = frozenset({"rate_limited", "quota_exceeded", "admission_unavailable"})


def settlement(event: RequestCompleted, *, count_cache_hits: bool) -> tuple[bool, int, float]:
    """``(counted, tokens, cost_usd)`` to settle the request's reservations to.

    An answered request counts with its real usage; one that no provider answered
    counts as a request with no tokens and no cost; a cache hit likewise, unless
    cache hits are not counted; one refused at admission does not count at all.
    """
    if event.error_kind in REFUSED:
        return False, 0, 0.0
    if event.cache_hit:
        return count_cache_hits, 0, 0.0
    return True, event.usage.total_tokens, event.cost_usd
