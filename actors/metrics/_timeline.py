"""The deployment's traffic over the last hour, in steps of ten seconds: requests,
errors, refusals, cache hits, cost and the requests' duration (for p50 and p95); and
each provider's calls, errors and their duration, summed over the last five minutes.

Kept apart from the series, which are totals since a reset: a chart needs the same
numbers per step, and an operator a provider's latency and errors now, not since the
numbers began. Each step is one hash that expires an hour after it ends, so the
timeline holds at most 360 of them whatever the traffic; a step's numbers come from
every process's events (each counted once, by the metrics group).

Redis keys::

    {ns}:metrics:timeline:{t}    hash    one step (t: its start, epoch seconds)
                                         requests, errors, rejected, cache_hits,
                                         cost_usd, timed (requests not refused), and
                                         one field per duration bucket (its upper
                                         bound, as in the series) for those; per
                                         provider p|{name}|calls, errors, timed and
                                         its calls' duration buckets
"""

from __future__ import annotations

from typing import Any

from ..messages import ProviderRecent, RequestCompleted, TimelinePoint, TimelineReport, kind_of
from ._render import milliseconds, quantile
from ._series import SKIPPED, bucket_of

__all__ = ["STEP_S", "TimelineBook"]

STEP_S = 10
_KEEP_S = 3600 + 2 * STEP_S  # a step is read for an hour after it ends
_COUNTS = ("requests", "errors", "rejected", "cache_hits")
RECENT_S = 300  # each provider's numbers: over the last five minutes
_NOT_CALLS = SKIPPED | {"waited", "cancelled"}  # no call, or one that never ended


class TimelineBook:
    """Gathers each step's numbers between flushes; writes them to Redis and reads
    them back (the same shape as ``UsageBook``: observe, drain, restore, read)."""

    def __init__(self, ns: str) -> None:
        self.prefix = f"{ns}:metrics:timeline"
        self._gathered: dict[int, dict[str, float]] = {}

    def observe(self, event: RequestCompleted) -> None:
        step = event.ts_ms // 1000 // STEP_S * STEP_S
        fields = self._gathered.setdefault(step, {})

        def add(field: str, value: float = 1.0) -> None:
            fields[field] = fields.get(field, 0.0) + value

        add("requests")
        if event.outcome == "failed" and kind_of(event.error_kind).refused:
            add("rejected")
            return  # refused at once: its duration would flatter the latency
        if event.outcome == "failed":
            add("errors")
        if event.cache_hit:
            add("cache_hits")
        if event.cost_usd:
            add("cost_usd", event.cost_usd)
        add(_bucket(event.latency_ms))
        add("timed")
        for attempt in event.attempts:  # each provider's calls, for its recent numbers
            if attempt.outcome in _NOT_CALLS:
                continue
            add(f"p|{attempt.provider}|calls")
            if attempt.outcome != "ok":
                add(f"p|{attempt.provider}|errors")
            if attempt.latency_ms:
                add(f"p|{attempt.provider}|{_bucket(attempt.latency_ms)}")
                add(f"p|{attempt.provider}|timed")

    def drain(self, pipe: Any) -> dict[int, dict[str, float]]:
        """Queue what was gathered on ``pipe``; the gathered, to put back on failure."""
        gathered, self._gathered = self._gathered, {}
        for step, fields in gathered.items():
            key = f"{self.prefix}:{step}"
            for field, value in fields.items():
                pipe.hincrbyfloat(key, field, value)
            pipe.expire(key, _KEEP_S)
        return gathered

    def restore(self, gathered: dict[int, dict[str, float]]) -> None:
        """Put back what a failed flush did not write (added to what came since)."""
        for step, fields in gathered.items():
            mine = self._gathered.setdefault(step, {})
            for field, value in fields.items():
                mine[field] = mine.get(field, 0.0) + value

    def forget(self) -> None:
        self._gathered = {}

    async def read(self, redis: Any, now_ms: int, minutes: int) -> TimelineReport:
        """Every step of the last ``minutes``, oldest first, the current one last; and
        each provider's numbers over the last ``RECENT_S`` (read along)."""
        last = now_ms // 1000 // STEP_S * STEP_S
        count = max(minutes * 60, RECENT_S) // STEP_S
        steps = [last - STEP_S * i for i in range(count - 1, -1, -1)]
        pipe = redis.pipeline(transaction=False)
        for step in steps:
            pipe.hgetall(f"{self.prefix}:{step}")
        found = [{bytes(k).decode(): float(v) for k, v in raw.items()}
                 for raw in await pipe.execute()]  # fmt: skip
        shown = minutes * 60 // STEP_S
        points = [_point(step, fields) for step, fields in zip(steps[-shown:], found[-shown:],
                                                                strict=True)]  # fmt: skip
        recent = found[-(RECENT_S // STEP_S) :]
        return TimelineReport(step_s=STEP_S, points=points, now_ms=now_ms, recent_s=RECENT_S,
                              providers=_providers(recent))  # fmt: skip


def _bucket(latency_ms: float) -> str:
    return bucket_of(latency_ms / 1000)


def _point(step: int, fields: dict[str, float]) -> TimelinePoint:
    if not fields:
        return TimelinePoint(t=step)
    p50, p95 = (quantile({**fields, "count": fields.get("timed", 0.0)}, q) for q in (0.5, 0.95))
    return TimelinePoint(
        t=step,
        **{name: int(fields.get(name, 0.0)) for name in _COUNTS},
        cost_usd=round(fields.get("cost_usd", 0.0), 9),
        p50_ms=milliseconds(p50),
        p95_ms=milliseconds(p95),
    )


def _providers(steps: list[dict[str, float]]) -> list[ProviderRecent]:
    """Each provider's calls, errors and latency over ``steps``, summed."""
    summed: dict[str, dict[str, float]] = {}
    for fields in steps:
        for field, value in fields.items():
            if field.startswith("p|"):
                _p, provider, name = field.split("|", 2)
                mine = summed.setdefault(provider, {})
                mine[name] = mine.get(name, 0.0) + value
    found = []
    for provider, fields in sorted(summed.items()):
        calls, errors = int(fields.get("calls", 0.0)), int(fields.get("errors", 0.0))
        timed = {**fields, "count": fields.get("timed", 0.0)}
        p50, p95 = (quantile(timed, q) for q in (0.5, 0.95))
        rate = round(errors / calls, 4) if calls else 0.0
        found.append(ProviderRecent(provider=provider, calls=calls, errors=errors,
                                    error_rate=rate, p50_ms=milliseconds(p50),
                                    p95_ms=milliseconds(p95)))  # fmt: skip
    return found
