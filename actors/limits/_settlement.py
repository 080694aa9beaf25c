"""Reserve then settle: what a finished request charges, and the actor shape that the
limiter and the quota keeper share (admit on asks, settle on ``request.completed``)."""

from __future__ import annotations

from typing import ClassVar, Generic, Protocol, TypeVar

from bus import Bus, Delivery, Message, Rejected

from ..messages import (
    AdminRefused,
    AdmissionAsk,
    AdmissionVerdict,
    LimitsCommand,
    LimitsReport,
    RequestCompleted,
    RequestFailure,
    kind_of,
)
from ..runtime import Actor
from ..runtime.config import check_limits
from ._verdict import Verdict

__all__ = ["ReservationStore", "ReservingActor", "reservation_of", "settlement"]


def settlement(event: RequestCompleted, *, count_cache_hits: bool) -> tuple[bool, int, float]:
    """``(counted, tokens, cost_usd)`` to settle the request's reservations to.

    An answered request counts with its real usage; one that no provider answered
    counts as a request with no tokens and no cost; a cache hit likewise, unless
    cache hits are not counted; one refused at admission does not count at all.
    """
    if kind_of(event.error_kind).refused:  # never made: its reservations are released
        return False, 0, 0.0
    if event.cache_hit:
        return count_cache_hits, 0, 0.0
    return True, event.usage.total_tokens, event.cost_usd


def reservation_of(message: AdmissionAsk | RequestCompleted) -> str:
    """The reservation a request's ask makes and its completion settles."""
    return message.reservation_id or message.request_id


class ReservationStore(Protocol):
    """What the limiter's and the quota keeper's stores share: one set of operations."""

    fields: tuple[str, ...]  # the names of its limits

    async def settle(
        self, user_id: str, request_id: str, tokens: int, cost_usd: float, *, counted: bool
    ) -> bool: ...

    async def report(
        self, user_id: str, session_id: str | None = None, tier: str = ""
    ) -> LimitsReport: ...

    async def set_config(self, user_id: str, changes: dict[str, float | None]) -> None: ...

    async def reset(self, user_id: str) -> None: ...


S = TypeVar("S", bound=ReservationStore)


class ReservingActor(Actor, Generic[S]):
    """Answers ``admission.ask`` on its own stream with ``admit`` and ``limits.command``
    (usage, config, reset) from its store; follows ``{ns}:events`` in the same group and
    settles each ``request.completed`` in ``store``. It alone changes its store."""

    def __init__(
        self, bus: Bus, stream: str, store: S, *, concurrency: int, count_cache_hits: bool
    ) -> None:
        super().__init__(bus, stream=stream, also=(bus.names.events,), concurrency=concurrency)
        self.store = store
        self.count_cache_hits = count_cache_hits

    refusal: ClassVar[RequestFailure]  # the kind of failure a refusal is

    async def reserve(self, ask: AdmissionAsk) -> Verdict:
        """Reserve what the asked request may use, in the store."""
        raise NotImplementedError

    def announce(self, ask: AdmissionAsk, verdict: Verdict) -> None:
        """Publish the alerts a verdict calls for (first refusals, warnings)."""

    def until(self, verdict: Verdict) -> str:
        """How the refusal message ends: when the refused limit has room again."""
        raise NotImplementedError

    async def admit(self, ask: AdmissionAsk) -> AdmissionVerdict:
        verdict = await self.reserve(ask)
        self.announce(ask, verdict)
        if verdict.admitted:
            return AdmissionVerdict(admitted=True, limits=verdict.limits)
        return AdmissionVerdict(
            admitted=False,
            kind=self.refusal,
            limit_type=verdict.limit_type,
            limit=verdict.limit,
            current=verdict.current,
            retry_after_s=verdict.retry_after_s,
            message=f"{verdict.limit_type}: {verdict.current:g} of {verdict.limit:g} used"
            + self.until(verdict),
            limits=verdict.limits,
        )

    async def command(self, command: LimitsCommand) -> Message:
        """Carry out an admin command; the report of the user as it stands after it."""
        if command.action == "config":
            try:
                changes = check_limits(command.changes, self.store.fields)
            except ValueError as exc:
                return AdminRefused(message=str(exc))
            await self.store.set_config(command.user_id, changes)
        elif command.action == "reset":
            await self.store.reset(command.user_id)
        return await self.store.report(command.user_id, command.session_id, command.tier)

    async def handle(self, message: Message, delivery: Delivery) -> Message | None:
        match message:
            case AdmissionAsk():
                return await self.admit(message)
            case LimitsCommand():
                return await self.command(message)
            case RequestCompleted(charged=True):
                return None  # charged for good at admission: nothing to settle
            case RequestCompleted():
                counted, tokens, cost = settlement(message, count_cache_hits=self.count_cache_hits)
                await self.store.settle(
                    message.user_id, reservation_of(message), tokens, cost, counted=counted
                )
                return None
            case _ if delivery.stream == self.bus.names.events:
                return None  # other events are not ours
            case _:
                raise Rejected(f"{self.group} does not take {type(message).__name__}")
