"""Admin HTTP for client keys: make one for a user, list them, revoke one. Behind the
admin token; each is a ``keys.command`` to the keyring."""

from __future__ import annotations

import msgspec
from aiohttp import web

from bus import BusError

from ..admin import Admin, AdminRefusedError
from ..messages import UserId
from ._bodies import BadInput, bus_failure, decode, error_response, json_response

__all__ = ["KeysApi"]


class NewKeyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /ai-orchestration/keys``: a key for this user (and tier)."""

    user_id: UserId
    tier: str = ""


class KeysApi:
    """``POST /ai-orchestration/keys`` (the key is in the answer, this once), ``GET
    /ai-orchestration/keys`` (ids, users, tiers: never the keys), ``POST
    /ai-orchestration/keys/{id}/revoke``."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/ai-orchestration/keys", self.add),
            web.get("/ai-orchestration/keys", self.listing),
            web.post("/ai-orchestration/keys/{id}/revoke", self.revoke),
        ]

    async def add(self, request: web.Request) -> web.Response:
        try:
            body = decode(await request.read(), NewKeyBody)
            report = await self.admin.keys("add", user_id=body.user_id, tier=body.tier)
        except (BadInput, AdminRefusedError) as exc:
            return error_response(400, "invalid_request", str(exc))
        except BusError as exc:
            return error_response(*bus_failure(exc))
        entry = report.keys[0]
        return json_response({"key": report.key, "id": entry.id, "user_id": entry.user_id,
                              "tier": entry.tier})  # fmt: skip

    async def listing(self, _request: web.Request) -> web.Response:
        try:
            report = await self.admin.keys("list")
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response({"keys": report.keys})

    async def revoke(self, request: web.Request) -> web.Response:
        try:
            report = await self.admin.keys("revoke", key_id=request.match_info["id"])
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response({"revoked": report.revoked})  # 0: no key had this id
