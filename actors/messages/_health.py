"""Provider health: the prober's findings (an event), its alerts, and the ask any
process (the gateway, an operator's tool) sends for the latest report."""

from __future__ import annotations

from typing import Literal

import msgspec

from bus import Message

HealthStatus = Literal["healthy", "degraded", "down"]


class ProviderHealth(Message, tag="provider.health", frozen=True, kw_only=True):
    """A provider's health as the prober judged it (on ``{ns}:events`` after each
    probe of the provider): from its last probes and the recent real traffic."""

    provider: str
    status: HealthStatus
    why: str = ""
    latency_ms: float | None = None  # the last probe's (None: it did not answer)
    probe_ok: bool = False
    error_rate: float = 0.0  # of real calls to it in the traffic window
    calls: int = 0  # real calls in the traffic window
    checked_at_ms: int = 0  # when it was last probed (Redis time)


class ProviderUnhealthy(Message, tag="provider.unhealthy", frozen=True, kw_only=True):
    """Alert (``{ns}:alerts``): a provider went down."""

    provider: str
    status: HealthStatus
    why: str
    latency_ms: float | None = None
    error_rate: float = 0.0
    ts_ms: int = 0


class ProviderRecovered(Message, tag="provider.recovered", frozen=True, kw_only=True):
    """Alert (``{ns}:alerts``): a provider that was down answers again."""

    provider: str
    status: HealthStatus
    why: str = ""
    latency_ms: float | None = None
    ts_ms: int = 0


class HealthCommand(Message, tag="health.command", frozen=True, kw_only=True):
    """To the health desk (``{ns}:health``): the latest report (``status``), or probe
    every provider now first (``probe``). The reply is a ``health.report``."""

    action: Literal["status", "probe"] = "status"


class HealthReport(Message, tag="health.report", frozen=True, kw_only=True):
    """Every enabled provider's health, and the worst of them."""

    providers: list[ProviderHealth] = msgspec.field(default_factory=list)
    checked_at_ms: int = 0

    @property
    def status(self) -> HealthStatus:
        """``down`` if any is down (or none is known), else ``degraded`` if any is."""
        states = {p.status for p in self.providers}
        if not states or "down" in states:
            return "down"
        return "degraded" if "degraded" in states else "healthy"

    def of(self, provider: str) -> ProviderHealth | None:
        return next((p for p in self.providers if p.provider == provider), None)
