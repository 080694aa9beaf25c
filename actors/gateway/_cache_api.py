"""Admin HTTP for the cache: its statistics, clearing and warming. Behind the admin
token, like every management endpoint; each is a ``cache.command`` to the cache actor."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from bus import BusError

from ..admin import Admin, AdminRefusedError
from ..messages import CacheReport, UserId, WarmEntry
from ._bodies import BadInput, bus_failure, decode, error_response, json_response

__all__ = ["CacheApi"]


class ClearBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /ai-orchestration/cache/clear``: everything (no field), one user's entries
    or one model's."""

    user_id: UserId | None = None
    model: str | None = None


class WarmBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /ai-orchestration/cache/warm``: answers to store ahead of time."""

    entries: list[WarmEntry]


class CacheApi:
    """``GET /ai-orchestration/cache/stats``, ``POST .../cache/clear``, ``POST
    .../cache/warm``."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ai-orchestration/cache/stats", self.stats),
            web.post("/ai-orchestration/cache/clear", self.clear),
            web.post("/ai-orchestration/cache/warm", self.warm),
        ]

    async def stats(self, _request: web.Request) -> web.Response:
        return await self._answer(self.admin.cache("stats"))

    async def clear(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = decode(raw, ClearBody) if raw.strip() else ClearBody()
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        return await self._answer(self.admin.cache("clear", user_id=body.user_id, model=body.model))

    async def warm(self, request: web.Request) -> web.Response:
        try:
            body = decode(await request.read(), WarmBody)
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        return await self._answer(self.admin.warm_cache(body.entries))

    async def _answer(self, asked: Any) -> web.Response:
        try:
            report: CacheReport = await asked
        except AdminRefusedError as exc:
            return error_response(400, "invalid_request", str(exc))
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response(report)
