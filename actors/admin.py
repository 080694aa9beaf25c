"""Administering the system over the bus: commands to the actors that own the state."""

from __future__ import annotations

from typing import Literal

from bus import Bus, BusError

from .messages import (
    AdminRefused,
    BreakerCommand,
    BreakerReport,
    LimitsCommand,
    LimitsReport,
    limiter_stream,
    quota_stream,
)

__all__ = ["Admin", "AdminRefusedError"]

Owner = Literal["limiter", "quota"]


class AdminRefusedError(ValueError):
    """The owner refused a command as sent (a limit out of range); nothing changed."""


class Admin:
    """Sends ``breaker.command`` and ``limits.command`` to the actors that own that state
    and returns their reports. A bus failure raises ``BusError`` (``AskTimeout`` when
    no owner answered in time)."""

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
    ) -> LimitsReport:
        """A user's rate limits (``limiter``) or quotas (``quota``), after a change if
        asked; ``AdminRefusedError`` when the owner refuses the changes."""
        stream = (limiter_stream if owner == "limiter" else quota_stream)(self.bus.names)
        command = LimitsCommand(action=action, user_id=user_id, session_id=session_id,
                                changes=changes or {})  # fmt: skip
        answer = await self.bus.ask(stream, command, self.timeout_s)
        if isinstance(answer, AdminRefused):
            raise AdminRefusedError(answer.message)
        assert isinstance(answer, LimitsReport)
        return answer
