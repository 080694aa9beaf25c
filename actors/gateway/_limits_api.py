"""Admin HTTP for quotas and rate limits: read a user's standing, change its limits,
start it over. Behind the admin token, like every management endpoint (``_admin``)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from aiohttp import web

from bus import BusError

from ..admin import Admin, AdminRefusedError, Owner
from ..messages import LimitsReport, UserId
from ..runtime.config import LimitChanges, QuotaChanges
from ._bodies import BadInput, bus_failure, decode, error_response, json_response
from ._callers import Callers

__all__ = ["LimitsApi"]

Action = Literal["usage", "config", "reset"]


class LimitsApi:
    """``/ai-orchestration/quotas/{user_id}`` and ``/ai-orchestration/rate-limits/{user_id}``,
    with ``/config`` (PUT: a partial body of limits, ``null`` = unlimited) and ``/reset``
    (POST: forget the user's usage; its overrides stay). Each is a ``limits.command`` to
    the quota keeper or the limiter, which own that state.

    The limits shown are the user's tier's (``?tier=`` names one; by default the tier
    of the user's client key), under the user's own overrides."""

    def __init__(self, admin: Admin, callers: Callers) -> None:
        self.admin = admin
        self.callers = callers

    def routes(self) -> list[web.RouteDef]:
        quotas = "/ai-orchestration/quotas/{user_id}"
        limits = "/ai-orchestration/rate-limits/{user_id}"
        return [
            web.get(quotas, self.quotas),
            web.put(quotas + "/config", self.set_quotas),
            web.post(quotas + "/reset", self.reset_quotas),
            web.get(limits, self.rate_limits),
            web.put(limits + "/config", self.set_rate_limits),
            web.post(limits + "/reset", self.reset_rate_limits),
        ]

    async def quotas(self, request: web.Request) -> web.Response:
        session = request.query.get("session_id") or None
        return await self._answer(request, "quota", "usage", session_id=session)

    async def set_quotas(self, request: web.Request) -> web.Response:
        return await self._answer(request, "quota", "config", body=QuotaChanges)

    async def reset_quotas(self, request: web.Request) -> web.Response:
        return await self._answer(request, "quota", "reset")

    async def rate_limits(self, request: web.Request) -> web.Response:
        return await self._answer(request, "limiter", "usage")

    async def set_rate_limits(self, request: web.Request) -> web.Response:
        return await self._answer(request, "limiter", "config", body=LimitChanges)

    async def reset_rate_limits(self, request: web.Request) -> web.Response:
        return await self._answer(request, "limiter", "reset")

    async def _answer(
        self,
        request: web.Request,
        owner: Owner,
        action: Action,
        *,
        session_id: str | None = None,
        body: type[Any] | None = None,
    ) -> web.Response:
        try:
            user_id = _user_id(request.match_info["user_id"])
            if session_id is not None:
                session_id = _user_id(session_id, "session_id")
            changes = await _changes(request, body) if body is not None else None
            tier = await self._tier(request, user_id)
            report = await self.admin.limits(owner, action, user_id, session_id=session_id,
                                             changes=changes, tier=tier)  # fmt: skip
        except (BadInput, AdminRefusedError) as exc:
            return error_response(400, "invalid_request", str(exc))
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response(_shown(owner, report))

    async def _tier(self, request: web.Request, user_id: str) -> str:
        named = request.query.get("tier")
        if named is None:
            return await self.callers.tier_of(user_id)
        tiers = self.callers.config.tiers
        if named and named not in tiers:
            known = ", ".join(sorted(tiers)) or "none configured"
            raise BadInput(f"tier: {named!r} is not a tier ({known})")
        return named


def _shown(owner: Owner, report: LimitsReport) -> dict[str, Any]:
    """The report as the HTTP API shows it: a user's rate limits, or its quotas."""
    if owner == "limiter":
        return {"user_id": report.user_id, "tier": report.tier or None,
                "limits": report.limits, "config": report.config}  # fmt: skip
    return {"user_id": report.user_id, "session_id": report.session_id,
            "tier": report.tier or None, "quotas": report.quotas,
            "config": report.config}  # fmt: skip


async def _changes(request: web.Request, kind: type[Any]) -> dict[str, float | None]:
    """The limits named in the body, checked; the others are UNSET and stay as they are."""
    changes = decode(await request.read(), kind)
    return {
        name: value
        for name, value in msgspec.structs.asdict(changes).items()
        if value is not msgspec.UNSET
    }


def _user_id(value: str, name: str = "user_id") -> str:
    try:
        return msgspec.convert(value, UserId)
    except msgspec.ValidationError as exc:
        raise BadInput(f"{name}: {exc}") from None
