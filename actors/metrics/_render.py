"""The deployment's numbers as Prometheus text (made with ``prometheus_client``) and as
the JSON of ``/ai-orchestration/stats``."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..messages import MetricsSnapshot
from ._series import DURATION_BUCKETS, buckets_of, parse_key

__all__ = ["milliseconds", "prometheus_text", "quantile", "stats"]

_HELP = {
    "aio_requests_total": "Requests answered or failed, by provider, model and outcome",
    "aio_request_duration_seconds": "Time the router spent on a request",
    "aio_provider_calls_total": "Provider calls (attempts), by outcome",
    "aio_provider_call_duration_seconds": "Time of one provider call",
    "aio_tokens_total": "Tokens of answered requests, by provider, model and type",
    "aio_cost_usd_total": "Cost of answered requests in US dollars",
    "aio_cache_hits_total": "Requests answered from the cache, by level",
    "aio_cache_saved_usd_total": "What the answers served from the cache cost when made, in USD",
    "aio_cache_saved_tokens_total": "Tokens of the answers served from the cache",
    "aio_rejections_total": "Requests refused for a rate limit or quota, by limit",
    "aio_limit_wait_seconds": "Time requests waited for a rate limit's room (wait_on_limit)",
    "aio_fallbacks_total": "Requests answered by another model than their first candidate's",
    "aio_hedges_total": "Hedged calls (made while an earlier call was out), by outcome",
    "aio_breaker_state": "Circuit breaker state: 0 closed, 1 half open, 2 open",
    "aio_provider_health": "Provider health: 0 down, 1 degraded, 2 healthy",
    "aio_provider_probe_latency_seconds": "The health prober's last probe latency",
    "gen_ai_client_token_usage": "Tokens used per operation (OpenTelemetry GenAI)",
    "gen_ai_client_operation_duration_seconds": "GenAI operation duration (OpenTelemetry)",
    "gen_ai_client_operation_time_to_first_chunk_seconds": "A stream's time to its first text",
    "aio_stream_pending": "Entries delivered and not yet acknowledged, per stream and group",
    "aio_dead_letters": "Entries in the dead-letter stream",
}


class _Snapshot(Collector):
    def __init__(self, snapshot: MetricsSnapshot, local: Iterable[Metric]) -> None:
        self.snapshot = snapshot
        self.local = list(local)

    def collect(self) -> Iterator[Metric]:
        counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        gauges: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        hists: dict[str, dict[tuple[tuple[str, str], ...], dict[str, float]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for key, value in self.snapshot.series.items():
            kind, name, labels, bucket = parse_key(key)
            labelled = tuple(sorted(labels.items()))
            if kind == "c":
                counters[name][labelled] = value
            elif kind == "g":
                gauges[name][labelled] = value
            elif kind == "h":
                hists[name][labelled][bucket] = value
        for name, series in sorted(counters.items()):
            yield _family(CounterMetricFamily, name.removesuffix("_total"), series)
        for name, series in sorted(gauges.items()):
            yield _family(GaugeMetricFamily, name, series)
        for name, histogram in sorted(hists.items()):
            names = sorted({k for labelled in histogram for k, _v in labelled})
            family = HistogramMetricFamily(name, _HELP.get(name, name), labels=names)
            for labelled, fields in histogram.items():
                values = dict(labelled)
                family.add_metric([values.get(n, "") for n in names],
                                  _cumulative(fields, buckets_of(name)),
                                  fields.get("sum", 0.0))  # fmt: skip
            yield family
        pending = GaugeMetricFamily("aio_stream_pending", _HELP["aio_stream_pending"],
                                    labels=["stream", "group"])  # fmt: skip
        for where, count in sorted(self.snapshot.pending.items()):
            stream, _, group = where.partition("|")
            pending.add_metric([stream, group], count)
        yield pending
        yield GaugeMetricFamily("aio_dead_letters", _HELP["aio_dead_letters"],
                                value=self.snapshot.dead_letters)  # fmt: skip
        yield from self.local


def _family(kind: Any, name: str, series: dict[tuple[tuple[str, str], ...], float]) -> Metric:
    names = sorted({k for labelled in series for k, _v in labelled})
    family: Any = kind(name, _HELP.get(name + "_total", _HELP.get(name, name)), labels=names)
    for labelled, value in sorted(series.items()):
        values = dict(labelled)
        family.add_metric([values.get(n, "") for n in names], value)
    made: Metric = family
    return made


def _cumulative(fields: dict[str, float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """Every configured bucket, cumulative, empty ones too (so that every series of a
    histogram has the same ``le`` from its first scrape on)."""
    total, out = 0.0, []
    for bound in bounds:
        total += fields.get(repr(float(bound)), 0.0)
        out.append((_le(bound), total))
    out.append(("+Inf", fields.get("count", total)))
    return out


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else repr(bound)


def prometheus_text(snapshot: MetricsSnapshot, local: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text exposition of the deployment's numbers (and this process's
    own ``local`` metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snapshot, local))
    return generate_latest(registry)


def quantile(
    fields: dict[str, float], q: float, bounds: tuple[float, ...] = DURATION_BUCKETS
) -> float | None:
    """A quantile from histogram fields (linear within its bucket, which runs from the
    bound below it), in the unit kept; past the last bound, that bound."""
    count = fields.get("count", 0.0)
    if not count:
        return None
    rank, seen, lower = q * count, 0.0, 0.0
    for bound in (*bounds, math.inf):
        inside = fields.get(repr(float(bound)), 0.0)
        if inside and seen + inside >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - seen) / inside
        seen += inside
        lower = bound
    return lower


def stats(snapshot: MetricsSnapshot) -> dict[str, Any]:
    """The deployment in one JSON object: requests, cache, providers (calls, errors,
    latency quantiles), rejections, breakers, health, tokens and cost (in all and per
    provider and model), what the cache saved, and what users used this day and month
    (the top users by tokens)."""
    requests: dict[str, float] = defaultdict(float)
    hits: dict[str, float] = defaultdict(float)
    rejections: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    calls: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    latency: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    breakers: dict[str, str] = {}
    health: dict[str, str] = {}
    tokens: dict[str, float] = defaultdict(float)
    saved: dict[str, float] = defaultdict(float)  # usd, tokens
    models: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    cost = 0.0
    for key, value in snapshot.series.items():
        _kind, name, labels, bucket = parse_key(key)
        if name == "aio_requests_total":
            requests[labels["outcome"]] += value
            if labels["provider"] != "none":
                models[labels["provider"], labels["model"]]["requests"] += value
        elif name == "aio_cache_hits_total":
            hits[labels["level"]] += value
        elif name == "aio_rejections_total":
            rejections[labels["kind"]][labels["limit_type"]] += value
        elif name == "aio_provider_calls_total":
            calls[labels["provider"]][labels["outcome"]] += value
        elif name == "aio_provider_call_duration_seconds":
            latency[labels["provider"]][bucket] += value
        elif name == "aio_breaker_state":
            breakers[labels["provider"]] = {0.0: "closed", 1.0: "half_open"}.get(value, "open")
        elif name == "aio_provider_health":
            health[labels["provider"]] = {0.0: "down", 1.0: "degraded"}.get(value, "healthy")
        elif name == "aio_tokens_total":
            tokens[labels["type"]] += value
            models[labels["provider"], labels["model"]][labels["type"] + "_tokens"] += value
        elif name == "aio_cost_usd_total":
            cost += value
            models[labels["provider"], labels["model"]]["cost_usd"] += value
        elif name == "aio_cache_saved_usd_total":
            saved["usd"] += value
        elif name == "aio_cache_saved_tokens_total":
            saved["tokens"] += value
    total = sum(requests.values())
    providers = {}
    for provider, outcomes in sorted(calls.items()):
        made = sum(outcomes.values())
        failed = made - outcomes.get("ok", 0.0)
        fields = latency.get(provider, {})
        providers[provider] = {
            "calls": int(made),
            "errors": int(failed),
            "error_rate": round(failed / made, 4) if made else 0.0,
            "latency_ms": {
                f"p{int(q * 100)}": milliseconds(quantile(fields, q)) for q in (0.5, 0.95, 0.99)
            },
            "breaker": breakers.get(provider, "closed"),
            "health": health.get(provider),
        }
    return {
        "requests": {"total": int(total), **{k: int(v) for k, v in sorted(requests.items())}},
        "cache": {"hits": {k: int(v) for k, v in sorted(hits.items())},
                  "hit_rate": round(sum(hits.values()) / total, 4) if total else 0.0,
                  "hit_rate_by_level": {k: round(v / total, 4) if total else 0.0
                                        for k, v in sorted(hits.items())},
                  "saved_usd": round(saved["usd"], 9), "saved_tokens": int(saved["tokens"])},
        "providers": providers,
        "rejections": {k: {t: int(n) for t, n in v.items()} for k, v in rejections.items()},
        "breakers": breakers,
        "health": health,
        "tokens": {k: int(v) for k, v in tokens.items()},
        "models": _models(models),
        "cost_usd": round(cost, 9),
        "usage": {u.period: msgspec.to_builtins(u) for u in snapshot.usage},
        "pending": snapshot.pending,
        "dead_letters": snapshot.dead_letters,
    }  # fmt: skip


def _models(models: dict[tuple[str, str], dict[str, float]]) -> list[dict[str, Any]]:
    """Requests, tokens and cost per provider and model, the costliest first."""
    rows = [
        {"provider": provider, "model": model, "requests": int(numbers["requests"]),
         "input_tokens": int(numbers["input_tokens"]),
         "output_tokens": int(numbers["output_tokens"]),
         "cost_usd": round(numbers["cost_usd"], 9)}
        for (provider, model), numbers in models.items()
    ]  # fmt: skip
    return sorted(rows, key=lambda row: (-row["cost_usd"], -row["requests"], row["model"]))


def milliseconds(seconds: float | None) -> float | None:
    """Seconds as milliseconds, to the microsecond (None stays None)."""
    return None if seconds is None else round(seconds * 1000, 3)
