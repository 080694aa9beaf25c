"""What the dashboard reads beside the stats: the traffic of the last hour, the users
page by page, the alerts as they arrive, and the bus itself.

``GET /ai-orchestration/monitoring/timeline`` is public, like the stats (numbers, no
user); the others name users or show the system's insides: management endpoints.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web
from redis.exceptions import ResponseError

from bus import REDIS_DOWN, BusError

from ..admin import Admin
from ..alerts import recent_alerts
from ..messages import LimitsReport, UsersPage, UsersQuery, actor_streams
from ._bodies import BadInput, bus_failure, error_response, json_response
from ._callers import Callers

__all__ = ["MonitorApi"]

_ENTRY_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_DIGITS = re.compile(r"[0-9]{1,9}")
_ID_MAX = 2**64 - 1  # each half of a stream entry id
# Redis away, or refusing a read (a cluster's TRYAGAIN, a key of another type).
_UNREADABLE: tuple[type[BaseException], ...] = (*REDIS_DOWN, ResponseError)
_DEAD_SHOWN = 10


class MonitorApi:
    """``GET /ai-orchestration/monitoring/timeline``, ``/ai-orchestration/users``,
    ``/ai-orchestration/alerts`` and ``/ai-orchestration/bus``."""

    def __init__(self, admin: Admin, callers: Callers) -> None:
        self.admin = admin
        self.callers = callers  # whose tiers say which limits a user has

    def public(self) -> list[web.RouteDef]:
        return [web.get("/ai-orchestration/monitoring/timeline", self.timeline)]

    def management(self) -> list[web.RouteDef]:
        return [
            web.get("/ai-orchestration/users", self.users),
            web.get("/ai-orchestration/alerts", self.alerts),
            web.get("/ai-orchestration/bus", self.bus),
        ]

    async def timeline(self, request: web.Request) -> web.Response:
        """``?minutes=`` (1 to 60, default 60): one point per ten seconds, oldest first."""
        try:
            query = _query(request, {"minutes"})
            minutes = _number(query, "minutes", 60, 1, 60)
            report = await self.admin.timeline(minutes)
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response(_untagged(report))

    async def users(self, request: web.Request) -> web.Response:
        """``?period=daily|monthly&sort=cost|tokens|requests|rejections&offset=&limit=``;
        with ``&limits=true`` each user's rate limits and quotas too (as
        ``/rate-limits/{user_id}`` and ``/quotas/{user_id}`` show them), asked of the
        limiter and the quota keeper in one round trip for the whole page."""
        try:
            query = _query(request, {"period", "sort", "offset", "limit", "limits"})
            with_limits = _flag(query.pop("limits", "false"), "limits")
            for name in ("offset", "limit"):
                if name in query:
                    _number(query, name, 0, 0, 1_000_000)  # digits only; the range below
            try:
                asked = msgspec.convert(query, UsersQuery, strict=False)
            except msgspec.ValidationError as exc:
                raise BadInput(f"query: {exc}") from None
            page = await self.admin.users(asked)
            body = _untagged(page)
            if with_limits:
                await self._with_limits(page, body["users"])
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response(body)

    async def _with_limits(self, page: UsersPage, rows: list[dict[str, Any]]) -> None:
        users = [user.user_id for user in page.users]
        tiers = await self.callers.tiers_of(users)
        standings = await self.admin.standings([(user, tiers[user]) for user in users])
        for row, (limits, quotas) in zip(rows, standings, strict=True):
            row["tier"] = tiers[row["user_id"]] or None
            for name, report in (("rate_limits", limits), ("quotas", quotas)):
                if isinstance(report, LimitsReport):
                    row[name] = msgspec.to_builtins(report.limits if name == "rate_limits"
                                                    else report.quotas)  # fmt: skip
                else:  # that user's row says so; the page is still shown
                    row[name] = None
                    row[name + "_error"] = str(report) or type(report).__name__

    async def alerts(self, request: web.Request) -> web.Response:
        """``?after=<entry id>&limit=`` (1 to 500, default 50): the alerts after that
        one, oldest first; without ``after``, the latest. ``last_id`` goes in the next
        ``after``."""
        try:
            query = _query(request, {"after", "limit"})
            limit = _number(query, "limit", 50, 1, 500)
            after = _entry_id(query.get("after") or None)
            if after == f"{_ID_MAX}-{_ID_MAX}":  # nothing can come after the last id
                return json_response({"alerts": [], "last_id": after})
            rows, last = await recent_alerts(self.admin.bus, after=after, limit=limit)
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except _UNREADABLE as exc:
            return error_response(503, "unavailable", f"Redis could not be read: {exc!r}")
        return json_response({"alerts": rows, "last_id": last})

    async def bus(self, request: web.Request) -> web.Response:
        """Every stream a group reads: its length, groups, consumers, pending and lag;
        and the dead letters (how many, and the latest ten)."""
        bus = self.admin.bus
        try:
            _query(request, set())
            streams = await bus.inspect(actor_streams(bus.names, self.admin.providers))
            count, latest = await bus.dead_letters(_DEAD_SHOWN)
        except BadInput as exc:
            return error_response(400, "invalid_request", str(exc))
        except _UNREADABLE as exc:
            return error_response(503, "unavailable", f"Redis could not be read: {exc!r}")
        body: dict[str, Any] = {
            "streams": streams,
            "dead_letters": {"stream": bus.names.dead, "count": count, "latest": latest},
        }
        return json_response(body)


def _query(request: web.Request, known: set[str]) -> dict[str, str]:
    """The query's parameters, each named in ``known`` and given once (``BadInput``)."""
    query: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in known:
            takes = ", ".join(sorted(known)) or "none"
            raise BadInput(f"unknown query parameter {name[:40]!r} (takes {takes})")
        if name in query:
            raise BadInput(f"{name}: given more than once")
        query[name] = value
    return query


def _untagged(message: Any) -> dict[str, Any]:
    """A bus reply as the HTTP API shows it: its fields, not its bus ``type``."""
    body: dict[str, Any] = msgspec.to_builtins(message)
    body.pop("type", None)
    return body


def _flag(text: str, name: str) -> bool:
    if text not in ("true", "false"):
        raise BadInput(f"{name}: {text[:40]!r} is neither true nor false")
    return text == "true"


def _number(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text):
        raise BadInput(f"{name}: {text[:40]!r} is not a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise BadInput(f"{name}: {value} is out of range ({low} to {high})")
    return value


def _entry_id(text: str | None) -> str | None:
    """A stream entry id as Redis takes it (each half below 2**64), else ``BadInput``."""
    if text is None:
        return None
    found = _ENTRY_ID.fullmatch(text)
    if found is None or max(int(found[1]), int(found[2])) > _ID_MAX:
        raise BadInput(f"after: {text[:40]!r} is no stream entry id (like 1764410000000-0)")
    return text
