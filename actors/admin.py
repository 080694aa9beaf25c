"""Administering the system over the bus: commands to the actors that own the state."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from bus import Bus, BusError

from .messages import (
    AdminRefused,
    BreakerCommand,
    BreakerReport,
    CacheCommand,
    CacheReport,
    HealthCommand,
    HealthReport,
    KeysCommand,
    KeysReport,
    LimitsCommand,
    LimitsReport,
    MetricsCommand,
    MetricsSnapshot,
    TimelineQuery,
    TimelineReport,
    UsersPage,
    UsersQuery,
    WarmEntry,
    cache_stream,
    health_stream,
    keys_stream,
    limiter_stream,
    metrics_stream,
    quota_stream,
)

__all__ = ["Admin", "AdminRefusedError"]

Owner = Literal["limiter", "quota"]


class AdminRefusedError(ValueError):
    """The owner refused a command as sent (a limit out of range); nothing changed."""


class Admin:
    """Sends ``breaker.command``, ``limits.command`` and ``cache.command`` to the actors
    that own that state and returns their reports. A bus failure raises ``BusError``
    (``AskTimeout`` when no owner answered in time)."""

    def __init__(self, bus: Bus, providers: list[str], *, timeout_s: float = 5.0) -> None:
        self.bus = bus
        self.providers = providers  # the enabled ones: each has a breaker
        self.timeout_s = timeout_s

    async def breakers(self) -> list[BreakerReport]:
        """Every enabled provider's breaker, asked all at once."""
        asks = [(self.bus.names.calls(p), BreakerCommand(action="status")) for p in self.providers]
        answers = await self.bus.ask_all(asks, self.timeout_s)
        reports = []
        for answer in answers:
            if isinstance(answer, BusError):
                raise answer
            assert isinstance(answer, BreakerReport)
            reports.append(answer)
        return reports

    async def breaker(
        self, provider: str, action: Literal["status", "reset", "open"]
    ) -> BreakerReport:
        """One breaker's state, after ``reset`` or ``open`` if asked."""
        answer = await self.bus.ask(
            self.bus.names.calls(provider), BreakerCommand(action=action), self.timeout_s
        )
        assert isinstance(answer, BreakerReport)
        return answer

    async def limits(
        self,
        owner: Owner,
        action: Literal["usage", "config", "reset"],
        user_id: str,
        *,
        session_id: str | None = None,
        changes: dict[str, float | None] | None = None,
        tier: str = "",
    ) -> LimitsReport:
        """A user's rate limits (``limiter``) or quotas (``quota``), after a change if
        asked, as its ``tier`` sets them; ``AdminRefusedError`` when the owner refuses
        the changes."""
        stream = (limiter_stream if owner == "limiter" else quota_stream)(self.bus.names)
        command = LimitsCommand(action=action, user_id=user_id, session_id=session_id,
                                changes=changes or {}, tier=tier)  # fmt: skip
        answer = await self.bus.ask(stream, command, self.timeout_s)
        if isinstance(answer, AdminRefused):
            raise AdminRefusedError(answer.message)
        assert isinstance(answer, LimitsReport)
        return answer

    async def standings(
        self, users: Sequence[tuple[str, str]]
    ) -> list[tuple[LimitsReport | BusError, LimitsReport | BusError]]:
        """The rate limits and the quotas of each ``(user_id, tier)``, asked all at once
        (one round trip): each a report, or the error its ask met."""
        names = self.bus.names
        asks = [
            (stream(names), LimitsCommand(action="usage", user_id=user, tier=tier))
            for user, tier in users
            for stream in (limiter_stream, quota_stream)
        ]
        answers = await self.bus.ask_all(asks, self.timeout_s) if asks else []
        shown: list[LimitsReport | BusError] = []
        for answer in answers:
            if isinstance(answer, AdminRefused):  # (a usage report is never refused)
                shown.append(BusError(answer.message))
                continue
            assert isinstance(answer, LimitsReport | BusError)
            shown.append(answer)
        return list(zip(shown[::2], shown[1::2], strict=True))

    async def cache(
        self,
        action: Literal["stats", "clear"],
        *,
        user_id: str | None = None,
        model: str | None = None,
    ) -> CacheReport:
        """The cache's statistics, after clearing everything, one user's entries or one
        model's if asked (``AdminRefusedError`` for a model the catalog lacks)."""
        return await self._cache(CacheCommand(action=action, user_id=user_id, model=model))

    async def warm_cache(self, entries: Sequence[WarmEntry | dict[str, Any]]) -> CacheReport:
        """Store answers ahead of time: each ``{"prompt" or "messages", "response",
        "model", "ttl", "shared", "user_id"}`` (and any sampling settings). All or none:
        ``AdminRefusedError`` names the first entry and field that is wrong."""
        try:
            checked = msgspec.convert(list(entries), list[WarmEntry], from_attributes=True)
        except msgspec.ValidationError as exc:
            raise AdminRefusedError(f"entries: {exc}") from None
        return await self._cache(CacheCommand(action="warm", entries=checked))

    async def _cache(self, command: CacheCommand) -> CacheReport:
        answer = await self.bus.ask(cache_stream(self.bus.names), command, self.timeout_s)
        if isinstance(answer, AdminRefused):
            raise AdminRefusedError(answer.message)
        assert isinstance(answer, CacheReport)
        return answer

    async def health(self, action: Literal["status", "probe"] = "status") -> HealthReport:
        """Every enabled provider's health, as the health prober found it (``probe``:
        probed again first)."""
        answer = await self.bus.ask(health_stream(self.bus.names), HealthCommand(action=action),
                                    self.timeout_s)  # fmt: skip
        assert isinstance(answer, HealthReport)
        return answer

    async def metrics(self, action: Literal["snapshot", "reset"] = "snapshot") -> MetricsSnapshot:
        """The deployment's numbers, from a metrics actor (``reset``: started over)."""
        answer = await self.bus.ask(metrics_stream(self.bus.names), MetricsCommand(action=action),
                                    self.timeout_s)  # fmt: skip
        assert isinstance(answer, MetricsSnapshot)
        return answer

    async def timeline(self, minutes: int = 60) -> TimelineReport:
        """The deployment's traffic over the last ``minutes``, in ten-second steps."""
        answer = await self.bus.ask(metrics_stream(self.bus.names), TimelineQuery(minutes=minutes),
                                    self.timeout_s)  # fmt: skip
        assert isinstance(answer, TimelineReport)
        return answer

    async def users(self, query: UsersQuery) -> UsersPage:
        """One page of this day's or month's users, by cost, tokens, requests or
        rejections."""
        answer = await self.bus.ask(metrics_stream(self.bus.names), query, self.timeout_s)
        assert isinstance(answer, UsersPage)
        return answer

    async def keys(
        self,
        action: Literal["add", "revoke", "list", "lookup"],
        *,
        user_id: str | None = None,
        tier: str = "",
        key_id: str = "",
        sha256: str = "",
    ) -> KeysReport:
        """Client keys: make one for a user (made here: only its SHA-256 goes on the bus;
        the answer's ``key`` shows it this once), revoke one by id, list them, or look
        one up by its SHA-256."""
        key = ""
        if action == "add":
            key = "aio-" + secrets.token_urlsafe(32)
            sha256 = hashlib.sha256(key.encode()).hexdigest()
        command = KeysCommand(action=action, user_id=user_id, tier=tier, id=key_id, sha256=sha256)
        answer = await self.bus.ask(keys_stream(self.bus.names), command, self.timeout_s)
        if isinstance(answer, AdminRefused):
            raise AdminRefusedError(answer.message)
        assert isinstance(answer, KeysReport)
        return msgspec.structs.replace(answer, key=key) if key else answer
