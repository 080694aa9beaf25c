"""What each event adds to the deployment's numbers, and how they are shown.

A series is kept in one Redis hash under ``kind|name|labels|bucket``: ``c`` a counter,
``g`` a gauge (set, not added), ``h`` a histogram (one field per bucket, counted
where an observation falls, plus ``sum`` and ``count``; cumulated when shown). Names
follow Prometheus conventions; where the OpenTelemetry GenAI semantic conventions
define a metric (``gen_ai.client.token.usage``, ``gen_ai.client.operation.duration``)
its Prometheus form is used, with the same attribute names.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from bus import Message

from ..messages import (
    BreakerClosed,
    BreakerHalfOpen,
    BreakerOpened,
    ProviderHealth,
    RequestCompleted,
)

__all__ = [
    "BREAKER_STATES",
    "DURATION_BUCKETS",
    "SKIPPED",
    "TOKEN_BUCKETS",
    "Update",
    "bucket_of",
    "buckets_of",
    "key_of",
    "parse_key",
    "updates",
]

# Seconds: a request, a provider call.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0)  # fmt: skip
# Tokens: OpenTelemetry's advice for gen_ai.client.token.usage.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)  # fmt: skip
BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_BREAKER = BREAKER_STATES
# Attempts that made no call (skipped before one), for the counts of calls.
SKIPPED = frozenset({"breaker_open", "key_invalid", "provider_down"})


def buckets_of(name: str) -> tuple[float, ...]:
    """The bucket bounds of a histogram (the last one, +Inf, aside)."""
    return tuple(map(float, TOKEN_BUCKETS)) if name == "gen_ai_client_token_usage" else (
        DURATION_BUCKETS)  # fmt: skip


_HEALTH = {"down": 0.0, "degraded": 1.0, "healthy": 2.0}


@dataclass(frozen=True, slots=True)
class Update:
    """One change to one series: ``add`` (counters, histogram fields) or ``set``."""

    op: str  # "add" | "set"
    key: str
    value: float


def key_of(kind: str, name: str, labels: dict[str, str], bucket: str = "") -> str:
    return f"{kind}|{name}|{_labels_text(tuple(sorted(labels.items())))}|{bucket}"


@functools.lru_cache(maxsize=4096)
def _labels_text(labels: tuple[tuple[str, str], ...]) -> str:
    # A request's ~20 series repeat a few label sets: json.dumps each time was 2% of a
    # request's CPU in the profile (benchmarks/gateway.py under py-spy).
    return json.dumps(dict(labels), separators=(",", ":"))


def parse_key(key: str) -> tuple[str, str, dict[str, str], str]:
    kind, name, rest = key.split("|", 2)
    labels, _, bucket = rest.rpartition("|")
    return kind, name, json.loads(labels), bucket


def bucket_of(value: float, buckets: tuple[float, ...] = DURATION_BUCKETS) -> str:
    """The bucket ``value`` falls in, as its field is named: its upper bound."""
    return repr(float(next((b for b in buckets if value <= b), math.inf)))


def _observe(name: str, labels: dict[str, str], value: float,
             buckets: tuple[float, ...]) -> Iterator[Update]:  # fmt: skip
    yield Update("add", key_of("h", name, labels, bucket_of(value, buckets)), 1.0)
    yield Update("add", key_of("h", name, labels, "sum"), value)
    yield Update("add", key_of("h", name, labels, "count"), 1.0)


def updates(message: Message) -> list[Update]:
    """What an event changes."""
    out: list[Update] = []
    if isinstance(message, RequestCompleted):
        out.extend(_completed(message))
    elif isinstance(message, BreakerOpened | BreakerHalfOpen | BreakerClosed):
        state = {BreakerOpened: "open", BreakerHalfOpen: "half_open"}.get(type(message), "closed")
        out.append(Update("set", key_of("g", "aio_breaker_state", {"provider": message.provider}),
                          _BREAKER[state]))  # fmt: skip
    elif isinstance(message, ProviderHealth):
        labels = {"provider": message.provider}
        out.append(Update("set", key_of("g", "aio_provider_health", labels),
                          _HEALTH[message.status]))  # fmt: skip
        if message.latency_ms is not None:
            out.append(Update("set", key_of("g", "aio_provider_probe_latency_seconds", labels),
                              message.latency_ms / 1000))  # fmt: skip
    return out


def _completed(done: RequestCompleted) -> Iterator[Update]:
    provider, model = done.provider or "none", done.model or "none"
    error = done.error_kind or ""
    yield Update("add", key_of("c", "aio_requests_total", {
        "provider": provider, "model": model, "outcome": done.outcome, "error_type": error,
    }), 1.0)  # fmt: skip
    yield from _observe("aio_request_duration_seconds", {"outcome": done.outcome},
                        done.latency_ms / 1000, DURATION_BUCKETS)  # fmt: skip
    if done.cache_hit:
        level = {"level": done.cache_level or "unknown"}
        yield Update("add", key_of("c", "aio_cache_hits_total", level), 1.0)
        if done.saved_usd:
            yield Update("add", key_of("c", "aio_cache_saved_usd_total", level), done.saved_usd)
        if done.saved_tokens:
            yield Update("add", key_of("c", "aio_cache_saved_tokens_total", level),
                         float(done.saved_tokens))  # fmt: skip
    if done.error_kind in ("rate_limited", "quota_exceeded"):
        yield Update("add", key_of("c", "aio_rejections_total", {
            "kind": done.error_kind, "limit_type": done.limit_type or "unknown"}), 1.0)  # fmt: skip
    if done.fallback_from:
        labels = {"model": done.fallback_from, "to_model": model}
        yield Update("add", key_of("c", "aio_fallbacks_total", labels), 1.0)
    for attempt in done.attempts:
        if attempt.hedge:
            yield Update("add", key_of("c", "aio_hedges_total", {
                "provider": attempt.provider, "outcome": attempt.outcome}), 1.0)  # fmt: skip
        if attempt.outcome == "waited":  # for a rate limit's room: no provider call
            yield from _observe("aio_limit_wait_seconds", {}, attempt.latency_ms / 1000,
                                DURATION_BUCKETS)  # fmt: skip
            continue
        if attempt.outcome in SKIPPED:
            continue
        labels = {"provider": attempt.provider, "model": attempt.model}
        yield Update("add", key_of("c", "aio_provider_calls_total",
                                   labels | {"outcome": attempt.outcome}), 1.0)  # fmt: skip
        if attempt.latency_ms:
            yield from _observe("aio_provider_call_duration_seconds", labels,
                                attempt.latency_ms / 1000, DURATION_BUCKETS)  # fmt: skip
        if attempt.first_token_ms is not None:
            yield from _observe("gen_ai_client_operation_time_to_first_chunk_seconds",
                                {"gen_ai_provider_name": attempt.provider,
                                 "gen_ai_request_model": attempt.model},
                                attempt.first_token_ms / 1000, DURATION_BUCKETS)  # fmt: skip
        gen_ai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": attempt.provider,
                  "gen_ai_request_model": attempt.model}  # fmt: skip
        if attempt.latency_ms:
            duration = gen_ai | {"gen_ai_response_model": attempt.model if attempt.outcome == "ok"
                                 else "", "error_type": "" if attempt.outcome == "ok"
                                 else attempt.outcome}  # fmt: skip
            yield from _observe("gen_ai_client_operation_duration_seconds", duration,
                                attempt.latency_ms / 1000, DURATION_BUCKETS)  # fmt: skip
    if done.outcome == "ok" and not done.cache_hit and done.provider:
        usage = done.usage
        gen_ai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": provider,
                  "gen_ai_request_model": model, "gen_ai_response_model": model}  # fmt: skip
        for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            yield from _observe("gen_ai_client_token_usage", gen_ai | {"gen_ai_token_type": kind},
                                float(count), TOKEN_BUCKETS)  # fmt: skip
            yield Update("add", key_of("c", "aio_tokens_total",
                                       {"provider": provider, "model": model, "type": kind}),
                         float(count))  # fmt: skip
        cost = key_of("c", "aio_cost_usd_total", {"provider": provider, "model": model})
        yield Update("add", cost, done.cost_usd)
