"""Admin HTTP for quotas and rate limits: read a user's standing, change its limits,
start it over. Behind the admin token, like every management endpoint (``_admin``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from bus import REDIS_DOWN, BusError

from ..messages import UserId
from ..runtime.config import LimitChanges, QuotaChanges
from ._bodies import BadInput, decode, error_response, json_response

if TYPE_CHECKING:
    from ..node import Node

__all__ = ["LimitsApi"]

_UNREACHABLE: tuple[type[BaseException], ...] = (BusError, *REDIS_DOWN)


class LimitsApi:
    """``/ai-orchestration/quotas/{user_id}`` and ``/ai-orchestration/rate-limits/{user_id}``,
    with ``/config`` (PUT: a partial body of limits, ``null`` = unlimited) and ``/reset``
    (POST: forget the user's usage; its overrides stay)."""

    def __init__(self, node: Node) -> None:
        self.node = node

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

    # -- quotas ----------------------------------------------------------------------

    async def quotas(self, request: web.Request) -> web.Response:
        async def read(user_id: str) -> dict[str, Any]:
            session = request.query.get("session_id") or None
            if session is not None:
                session = _user_id(session, "session_id")
            return await self.node.quotas.get_usage(user_id, session)

        return await _answer(request, read)

    async def set_quotas(self, request: web.Request) -> web.Response:
        async def change(user_id: str) -> dict[str, Any]:
            changes = await _changes(request, QuotaChanges)
            await self.node.quotas.set_user_quota_config(user_id, changes)
            return await self.node.quotas.get_usage(user_id)

        return await _answer(request, change)

    async def reset_quotas(self, request: web.Request) -> web.Response:
        async def reset(user_id: str) -> dict[str, Any]:
            await self.node.quotas.reset(user_id)
            return await self.node.quotas.get_usage(user_id)

        return await _answer(request, reset)

    # -- rate limits -----------------------------------------------------------------

    async def rate_limits(self, request: web.Request) -> web.Response:
        return await _answer(request, self._standing)

    async def set_rate_limits(self, request: web.Request) -> web.Response:
        async def change(user_id: str) -> dict[str, Any]:
            await self.node.limits.set_config(user_id, await _changes(request, LimitChanges))
            return await self._standing(user_id)

        return await _answer(request, change)

    async def reset_rate_limits(self, request: web.Request) -> web.Response:
        async def reset(user_id: str) -> dict[str, Any]:
            await self.node.limits.reset(user_id)
            return await self._standing(user_id)

        return await _answer(request, reset)

    async def _standing(self, user_id: str) -> dict[str, Any]:
        store = self.node.limits
        rows = [
            {
                "limit_type": state.name,
                "limit": state.limit,
                "used": round(state.limit - state.remaining, 9),
                "remaining": state.remaining,
                "reset_s": state.reset_s,
            }
            for state in await store.status(user_id)
        ]
        return {"user_id": user_id, "limits": rows, "config": await store.config_of(user_id)}


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


async def _answer(request: web.Request, work: Any) -> web.Response:
    try:
        return json_response(await work(_user_id(request.match_info["user_id"])))
    except (BadInput, ValueError) as exc:  # ValueError: a limit the stores refused
        return error_response(400, "invalid_request", str(exc))
    except _UNREACHABLE as exc:
        return error_response(503, "unavailable", f"Redis cannot be reached: {exc}")
