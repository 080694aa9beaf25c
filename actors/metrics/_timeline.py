"""The deployment's traffic over the last hour, in steps of ten seconds: requests,
errors, refusals, cache hits, cost and the requests' duration (for p50 and p95).

Kept apart from the series, which are totals since a reset: a chart needs the same
numbers per step. Each step is one hash that expires an hour after it ends, so the
timeline holds at most 360 of them whatever the traffic; a step's numbers come from
every process's events (each counted once, by the metrics group).

Redis keys::

    {ns}:metrics:timeline:{t}    hash    one step (t: its start, epoch seconds)
                                         requests, errors, rejected, cache_hits,
                                         cost_usd, timed (requests not refused), and
                                         one field per duration bucket (its upper
                                         bound, as in the series) for those
"""

from __future__ import annotations

import math
from typing import Any

from ..messages import RequestCompleted, TimelinePoint, TimelineReport, kind_of
from ._render import quantile
from ._series import DURATION_BUCKETS

__all__ = ["STEP_S", "TimelineBook"]

STEP_S = 10
_KEEP_S = 3600 + 2 * STEP_S  # a step is read for an hour after it ends
_COUNTS = ("requests", "errors", "rejected", "cache_hits")


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
        seconds = event.latency_ms / 1000
        add(repr(float(next((b for b in DURATION_BUCKETS if seconds <= b), math.inf))))
        add("timed")

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
        """Every step of the last ``minutes``, oldest first, the current one last."""
        last = now_ms // 1000 // STEP_S * STEP_S
        steps = [last - STEP_S * i for i in range(minutes * 60 // STEP_S - 1, -1, -1)]
        pipe = redis.pipeline(transaction=False)
        for step in steps:
            pipe.hgetall(f"{self.prefix}:{step}")
        found = await pipe.execute()
        points = []
        for step, raw in zip(steps, found, strict=True):
            if not raw:
                points.append(TimelinePoint(t=step))
                continue
            fields = {bytes(k).decode(): float(v) for k, v in raw.items()}
            fields["count"] = fields.get("timed", 0.0)
            p50, p95 = (quantile(fields, q) for q in (0.5, 0.95))
            points.append(
                TimelinePoint(
                    t=step,
                    **{name: int(fields.get(name, 0.0)) for name in _COUNTS},
                    cost_usd=round(fields.get("cost_usd", 0.0), 9),
                    p50_ms=None if p50 is None else round(p50 * 1000, 3),
                    p95_ms=None if p95 is None else round(p95 * 1000, 3),
                )
            )
        return TimelineReport(step_s=STEP_S, points=points, now_ms=now_ms)
