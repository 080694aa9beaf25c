"""How a provider's health is judged: its last probes, and the real calls made to it
in the traffic window (from ``request.completed``)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..messages import HealthStatus, ProviderHealth, RequestCompleted
from ..providers import ProbeResult
from ..runtime import HealthConfig

__all__ = ["Traffic", "judge"]

# Outcomes of real calls that say a provider is unwell (a 429 says it is busy, a bad
# request says nothing of it, an open breaker is not a call).
_UNWELL = frozenset({"server_error", "timeout", "unavailable", "authentication"})


@dataclass(slots=True)
class Traffic:
    """Real calls per provider in the last ``window_ms``: when, and whether they failed."""

    window_ms: int
    _calls: dict[str, deque[tuple[int, bool]]] = field(default_factory=dict)

    def observe(self, event: RequestCompleted) -> None:
        for attempt in event.attempts:
            if attempt.outcome == "ok" or attempt.outcome in _UNWELL:
                calls = self._calls.setdefault(attempt.provider, deque())
                calls.append((event.ts_ms, attempt.outcome != "ok"))
                while calls and calls[0][0] < event.ts_ms - self.window_ms:
                    calls.popleft()

    def counts(self, provider: str, now_ms: int) -> tuple[int, int]:
        """Calls and failed calls in the window."""
        calls = self._calls.get(provider)
        if not calls:
            return 0, 0
        while calls and calls[0][0] < now_ms - self.window_ms:
            calls.popleft()
        return len(calls), sum(failed for _ts, failed in calls)


def judge(
    provider: str,
    probes: deque[ProbeResult],
    traffic: Traffic,
    config: HealthConfig,
    now_ms: int,
    *,
    was_down: bool = False,
) -> ProviderHealth:
    """``down`` after ``down_after`` failed probes in a row (or one, when it was down
    already); ``degraded`` after one, or when the probe is rate limited (busy, not
    down) or slow, or when real calls fail at ``degraded_error_rate`` or more; else
    ``healthy``."""
    last = probes[-1]
    in_a_row = 0
    for probe in reversed(probes):
        if probe.ok or probe.detail.startswith("rate_limited"):
            break
        in_a_row += 1
    calls, failed = traffic.counts(provider, now_ms)
    rate = failed / calls if calls else 0.0
    status: HealthStatus
    if not last.ok and last.detail.startswith("rate_limited"):
        status, why = "degraded", f"the probe was rate limited: {last.detail}"
    elif not last.ok:
        status = "down" if was_down or in_a_row >= config.down_after else "degraded"
        why = f"{in_a_row} probe(s) in a row failed: {last.detail}"
    elif calls >= config.min_calls and rate >= config.degraded_error_rate:
        window = config.traffic_window_s
        status, why = "degraded", f"{failed} of {calls} calls failed in the last {window}s"
    elif last.latency_ms > config.slow_ms:
        status, why = "degraded", f"the probe took {last.latency_ms:.0f} ms"
    else:
        status, why = "healthy", f"the probe answered in {last.latency_ms:.0f} ms"
    return ProviderHealth(
        provider=provider,
        status=status,
        why=why,
        latency_ms=round(last.latency_ms, 3) if last.ok else None,
        probe_ok=last.ok,
        error_rate=round(rate, 4),
        calls=calls,
        checked_at_ms=now_ms,
    )
