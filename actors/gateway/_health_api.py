"""Health over HTTP: providers' health (the prober's findings and the breakers), and
this process's liveness and readiness (for Kubernetes probes and load balancers)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bus import BusError

from ..admin import Admin
from ..messages import BreakerReport, HealthReport
from ._bodies import bus_failure, error_response, json_response

__all__ = ["HealthApi"]


def _iso(ms: int) -> str | None:
    return (
        dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds") if ms else None
    )


class HealthApi:
    """``GET /ai-orchestration/health``, ``/ai-orchestration/healthy-providers``,
    ``/healthz`` (alive) and ``/readyz`` (Redis answers, this process's actors run).
    Public: probes and load balancers carry no admin token."""

    def __init__(
        self, admin: Admin, ready: Callable[[], Awaitable[str]] | None, *, probing: bool = True
    ) -> None:
        self.admin = admin
        self.ready = ready
        self.probing = probing  # false: health.enabled is off, no prober runs anywhere

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ai-orchestration/health", self.health),
            web.get("/ai-orchestration/healthy-providers", self.healthy),
            web.get("/healthz", self.alive),
            web.get("/readyz", self.readiness),
        ]

    async def _both(self) -> tuple[HealthReport, list[BreakerReport]]:
        return await asyncio.gather(self.admin.health(), self.admin.breakers())

    async def health(self, _request: web.Request) -> web.Response:
        if not self.probing:  # no prober to ask: the breakers alone, and why
            return await self._breakers_only()
        try:
            report, breakers = await self._both()
        except BusError as exc:
            return error_response(*bus_failure(exc))
        states = {b.provider: b.state for b in breakers}
        rows: list[dict[str, Any]] = [
            {
                "provider": p.provider,
                "status": p.status,
                "latency_ms": p.latency_ms,
                "error_rate": p.error_rate,
                "calls": p.calls,
                "checked_at": _iso(p.checked_at_ms),
                "breaker": states.get(p.provider, "closed"),
                "why": p.why,
            }
            for p in report.providers
        ]
        return json_response({"status": report.status, "providers": rows})

    async def _breakers_only(self) -> web.Response:
        try:
            breakers = await self.admin.breakers()
        except BusError as exc:
            return error_response(*bus_failure(exc))
        why = "health probing is off (health.enabled = false)"
        rows = [{"provider": b.provider, "status": "unknown", "latency_ms": None,
                 "error_rate": None, "calls": 0, "checked_at": None, "breaker": b.state,
                 "why": why} for b in breakers]  # fmt: skip
        return json_response({"status": "unknown", "providers": rows})

    async def healthy(self, _request: web.Request) -> web.Response:
        """The providers a request may go to now: healthy, their breaker closed (with
        probing off, every provider whose breaker is closed: the router's view too)."""
        try:
            if not self.probing:
                breakers = await self.admin.breakers()
                names = [b.provider for b in breakers if b.state == "closed"]
                return json_response({"providers": names})
            report, breakers = await self._both()
        except BusError as exc:
            return error_response(*bus_failure(exc))
        closed = {b.provider for b in breakers if b.state == "closed"}
        names = [
            p.provider for p in report.providers if p.status == "healthy" and p.provider in closed
        ]
        return json_response({"providers": names})

    async def alive(self, _request: web.Request) -> web.Response:
        return json_response({"status": "alive"})

    async def readiness(self, _request: web.Request) -> web.Response:
        why = await self.ready() if self.ready is not None else ""
        if why:
            return error_response(503, "not_ready", why)
        return json_response({"status": "ready"})
