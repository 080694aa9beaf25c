"""Metrics over HTTP: ``GET /metrics`` (Prometheus), the JSON stats of the whole
deployment, and their reset (a management endpoint)."""

from __future__ import annotations

from aiohttp import web

from bus import BusError

from ..admin import Admin
from ..messages import MetricsSnapshot
from ..metrics import prometheus_text, stats
from ..runtime import Metrics
from ._bodies import bus_failure, error_response, json_response

__all__ = ["MetricsApi"]

# The text exposition format prometheus_client writes (generate_latest).
_PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class MetricsApi:
    def __init__(self, admin: Admin, local: Metrics) -> None:
        self.admin = admin
        self.local = local

    def public(self) -> list[web.RouteDef]:
        return [
            web.get("/metrics", self.metrics),
            web.get("/ai-orchestration/stats", self.stats),
            web.get("/ai-orchestration/monitoring/stats", self.stats),
        ]

    def management(self) -> list[web.RouteDef]:
        return [web.post("/ai-orchestration/monitoring/reset", self.reset)]

    async def metrics(self, _request: web.Request) -> web.Response:
        """The deployment's numbers (from a metrics actor) and this process's own."""
        try:
            snapshot = await self.admin.metrics()
        except BusError:  # no metrics actor answered: this process's own only
            snapshot = MetricsSnapshot()
        body = prometheus_text(snapshot, self.local.families())
        return web.Response(body=body, headers={"Content-Type": _PROMETHEUS_TEXT})

    async def stats(self, _request: web.Request) -> web.Response:
        try:
            snapshot = await self.admin.metrics()
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response(stats(snapshot))

    async def reset(self, _request: web.Request) -> web.Response:
        try:
            snapshot = await self.admin.metrics("reset")
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response(stats(snapshot))
