"""The router's side of the cache: waiting for an identical request in flight,
answering from the cache (a stream gets the answer as stream pieces), and the
``request.completed`` that hands an answer to the cache to keep."""

from __future__ import annotations

import os

import structlog

from bus import AskTimeout, Bus, BusError, Delivery, Message

from ..messages import (
    CacheAnswer,
    CacheFollow,
    CacheTicket,
    GenerateFailed,
    GenerateRequest,
    GenerateResponse,
    RequestCompleted,
    StreamDelta,
    cache_stream,
)
from ..providers import Completion, Usage

__all__ = ["completed", "follow", "from_cache"]

log = structlog.get_logger("router")

# How much longer than the leader's lease a follower waits before it asks again (the
# next follow leads when the lease ran out: the leader vanished).
_SLACK_MS = 500
# A cached answer replayed to a stream goes in pieces of this many characters.
_REPLAY_CHARS = 256


async def follow(
    bus: Bus, request: GenerateRequest, cached: CacheAnswer, deadline_ms: int
) -> CacheAnswer | None:
    """Wait for the identical request in flight: its answer, or the lead (when it
    failed, or its lease ran out), or None (go on alone: the cache cannot say)."""
    assert cached.ticket is not None
    ask = CacheFollow(request_id=request.request_id, ticket=cached.ticket, deadline_ms=deadline_ms)
    # Not much past the leader's lease: if it vanished, the next follow leads (a new
    # leader's lease is about as long: the same wait again). Asked again under the same
    # correlation id: an answer to the earlier ask still reaches it.
    wait_ms = max(cached.lead_ms, 1_000) + _SLACK_MS
    corr = os.urandom(12).hex()
    while (left := deadline_ms - bus.now_ms()) > 0:
        try:
            answer = await bus.ask(cache_stream(bus.names), ask, min(left, wait_ms) / 1000,
                                   correlation_id=corr)  # fmt: skip
        except AskTimeout:
            continue
        except BusError as exc:
            log.info("router.follow_failed", error=repr(exc))
            return None
        if isinstance(answer, CacheAnswer):
            return answer
        return None
    return None


async def from_cache(
    bus: Bus, request: GenerateRequest, cached: CacheAnswer, delivery: Delivery
) -> GenerateResponse:
    """The cached answer as the router's; a stream gets it as stream pieces."""
    answer = cached.answer
    assert answer is not None
    if request.stream and delivery.reply_to is not None:
        level = cached.level or ""
        pieces = []
        for start in range(0, max(1, len(answer.content)), _REPLAY_CHARS):
            text = answer.content[start : start + _REPLAY_CHARS]
            first = start == 0
            pieces.append(StreamDelta(text=text, model=answer.model if first else "",
                                      cache_level=level if first else "",
                                      similarity=cached.similarity if first else None,
                                      cache_entry=cached.matched if first else ""))  # fmt: skip
        await bus.reply(delivery.reply_to, delivery.correlation_id, *pieces)  # one round trip
    return GenerateResponse(
        request_id=request.request_id,
        content="" if request.stream else answer.content,
        provider=answer.provider,
        model=answer.model,
        finish_reason="stop",
        usage=answer.usage,
        cost_usd=0.0,
        processing_time_ms=0.0,
        cache_hit=True,
        cache_level=cached.level or "",
        similarity=cached.similarity,
        cache_entry=cached.matched,
    )


def completed(
    request: GenerateRequest,
    result: Message,
    elapsed_ms: float,
    reservation: str,
    ticket: CacheTicket | None,
    completion: Completion | None,
    now_ms: int,
    *,
    charged: bool = False,
    spent: list[Completion] | None = None,
) -> RequestCompleted:
    """The ``request.completed`` of a request's end; with the cache's ticket, and the
    answer's text when it may be kept (the cache decides). ``spent``: answers made and
    not served (output that failed its check), whose usage and cost count too."""
    extra = Usage(
        input_tokens=sum(c.usage.input_tokens for c in spent or []),
        output_tokens=sum(c.usage.output_tokens for c in spent or []),
        total_tokens=sum(c.usage.total_tokens for c in spent or []),
    )
    extra_cost = sum(c.cost_usd for c in spent or [])
    if isinstance(result, GenerateResponse):
        keep = ticket is not None and completion is not None and not result.fallback
        return RequestCompleted(
            request_id=request.request_id, user_id=request.user_id,
            session_id=request.session_id,
            outcome="fallback" if result.fallback else "ok",
            provider=result.provider, model=result.model,
            usage=Usage() if result.cache_hit else _plus(result.usage, extra),
            cost_usd=result.cost_usd + extra_cost, latency_ms=elapsed_ms,
            attempts=result.attempts,
            cache_hit=result.cache_hit, cache_level=result.cache_level, stream=request.stream,
            error_kind=result.reason.partition(":")[0] if result.fallback else "",
            ts_ms=now_ms, reservation_id=reservation, cache_ticket=ticket,
            content=completion.content if keep and completion else "",
            finish_reason=result.finish_reason, charged=charged,
            fallback_from=result.fallback_from,
        )  # fmt: skip
    assert isinstance(result, GenerateFailed)
    return RequestCompleted(
        request_id=request.request_id, user_id=request.user_id,
        session_id=request.session_id, outcome="failed", latency_ms=elapsed_ms,
        attempts=result.attempts, stream=request.stream, error_kind=result.kind,
        ts_ms=now_ms, reservation_id=reservation, cache_ticket=ticket,
        limit_type=result.limit_type, usage=extra, cost_usd=extra_cost,
    )  # fmt: skip


def _plus(a: Usage, b: Usage) -> Usage:
    if not b.total_tokens and not b.input_tokens and not b.output_tokens:
        return a
    return Usage(input_tokens=a.input_tokens + b.input_tokens,
                 output_tokens=a.output_tokens + b.output_tokens,
                 total_tokens=a.total_tokens + b.total_tokens)  # fmt: skip
