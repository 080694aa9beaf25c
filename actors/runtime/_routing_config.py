"""The config's sections for routing: the router and the circuit breakers."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "FALLBACK_CLASSES",
    "BreakerConfig",
    "FallbackClass",
    "NonNegative",
    "Percent",
    "Positive",
    "RouterConfig",
]

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(gt=0, le=100)]


# The failures that send a request down its model's fallback chain (to other models):
# a provider's server errors (5xx, unreachable, its breaker open or its key rejected),
# timeouts, its 429s, its content filter, a context window too small.
FallbackClass = Literal[
    "server_error", "timeout", "rate_limited", "content_filtered", "context_too_long"
]
FALLBACK_CLASSES: tuple[str, ...] = FallbackClass.__args__  # type: ignore[attr-defined]


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the router picks providers and retries (times in milliseconds)."""

    strategy: Literal["performance", "cost", "round_robin", "weighted"] = "performance"
    # Weights of the weighted strategy, by provider; a provider not named weighs 1.
    weights: dict[str, Annotated[float, msgspec.Meta(ge=0)]] = {}
    request_timeout_ms: Positive = 60_000
    # While other candidates remain, one attempt gets at most this share of what is
    # left of the request's deadline (and never more than its provider's timeout_ms):
    # a provider that hangs leaves time for the next one. 1: no share.
    attempt_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    # Retries on one provider back off from base to max, with jitter, and never
    # for less than the provider's Retry-After.
    retry_base_ms: Positive = 100
    retry_max_ms: Positive = 2_000
    # The performance strategy explores: this share of requests goes first to a
    # candidate with no answer seen for explore_after_s (a faster provider is found).
    explore_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.05
    explore_after_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    # Requests one router process handles at once.
    concurrency: Positive = 512
    # Output tokens assumed by the cost strategy when a request sets no max_tokens.
    expected_output_tokens: Positive = 512
    # A request that sets no max_tokens: the call's max_tokens, and what admission
    # reserves, the same number (capped by each model's maximum output; a catalog
    # model may set its own, default_max_tokens).
    default_max_tokens: Positive = 4_096
    # An answer that is not the JSON its response_format asked for: ask the next
    # candidate (next), or fail the request at once (fail). Never served either way.
    invalid_output: Literal["next", "fail"] = "next"
    # Fallback chains: a model or alias -> the models to try, in order, when it fails
    # (after every provider of the model itself). A model not named here falls back to
    # the other vendors' models of the first catalog tier it is in (default_fallbacks).
    fallbacks: dict[str, list[str]] = {}
    default_fallbacks: bool = True
    # Which failures go down the chain (any other ends the request with its error).
    fallback_on: list[FallbackClass] = msgspec.field(
        default_factory=lambda: ["server_error", "timeout", "rate_limited", "context_too_long"]
    )
    # How a model's deployments (a provider's accounts, Azure beside OpenAI) are ordered
    # among themselves: as the strategy says, the fewest calls in flight across every
    # process first (least_busy), or the most left of their grants first (headroom).
    balance: Literal["strategy", "least_busy", "headroom"] = "strategy"
    # Hedged requests (not streams): when the first call has not answered within the
    # hedge delay, the next candidate is called too, and the first answer wins (the
    # other call is cancelled). On for every request (hedge), for the models named
    # (hedge_models: ids or aliases), or per request ("hedge": true). The delay: fixed
    # (hedge_delay_ms), else about the provider's recent 95th percentile latency
    # (hedge_unknown_ms before it has answered).
    hedge: bool = False
    hedge_models: list[str] = []
    hedge_delay_ms: Positive | None = None
    hedge_unknown_ms: Positive = 2_000
    # The largest request taken (a 400 beyond): what one request may cost the process.
    max_messages: Positive = 10_000
    max_prompt_chars: Positive = 4_000_000


class BreakerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Circuit breakers, one per provider, in the manner of resilience4j."""

    window_type: Literal["count", "time"] = "count"
    # Calls (count) or seconds (time) the failure and slow-call rates are judged over.
    window_size: Positive = 20
    # No judgement before this many calls in the window.
    minimum_calls: Positive = 10
    failure_rate_threshold: Percent = 50
    slow_call_ms: Positive = 30_000
    slow_call_rate_threshold: Percent = 100
    open_ms: Positive = 30_000
    half_open_calls: Positive = 3
    # A half-open breaker whose trials have not all reported after this long counts
    # the missing ones as failures (a hung trial); 0: wait forever.
    half_open_max_wait_ms: NonNegative = 60_000
    # Calls one breaker process makes at once to its provider.
    concurrency: Positive = 512
    # How often each process re-reads every breaker's state from Redis (events bring
    # changes at once; this bounds how stale a missed event leaves a view).
    refresh_ms: Positive = 500
