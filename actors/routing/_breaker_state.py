"""Circuit breaker state, shared through Redis: the scripts that move it, and a view.

Every process's breakers move the shared state with ``lua/breaker_*.lua`` (one
script per atomic step, on Redis time). Each process keeps a ``BreakerView``: the
state of every provider's breaker as last learned from breaker events and from a
re-read every ``refresh_ms``, so a breaker opened anywhere is refused everywhere
within that time (events usually bring it in milliseconds).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from bus import REDIS_DOWN, Bus, Message, Names, call_script, cancel_and_wait, lua_source

from ..messages import BreakerClosed, BreakerHalfOpen, BreakerOpened
from ..runtime.config import BreakerConfig


def breaker_key(names: Names, provider: str) -> str:
    """A breaker's state (a hash; ``{key}:window`` its sliding window): the braces keep
    both in one Redis Cluster slot. Layouts: the headers of ``lua/breaker_*.lua``."""
    return f"{names.ns}:breaker:{{{provider}}}"


__all__ = ["BreakerState", "BreakerStore", "BreakerView", "Decision", "Transition"]

log = structlog.get_logger("breaker")


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One provider's breaker as a process last saw it."""

    provider: str
    state: str = "closed"  # closed | open | half_open
    open_until_ms: int = 0  # 0 while open: until an admin resets it
    key_invalid: bool = False
    forced: bool = False
    reason: str = ""
    version: int = 0

    def refuses(self, now_ms: int) -> bool:
        """Whether a call should not even be tried (the breaker would refuse it)."""
        if self.key_invalid or self.forced:
            return True
        return self.state == "open" and now_ms < self.open_until_ms

    def public(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "state": self.state,
            "open_until_ms": self.open_until_ms or None,
            "key_invalid": self.key_invalid,
            "forced_open": self.forced,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a call may go: ``allow``, ``trial`` (a half-open permit) or ``reject``."""

    verdict: str
    state: str
    open_until_ms: int = 0
    reason: str = ""
    transition: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """What recording an outcome did: ``opened``, ``closed`` or nothing (``""``)."""

    moved: str
    state: str
    open_until_ms: int = 0
    failure_rate: float | None = None
    slow_call_rate: float | None = None
    calls: int = 0
    reason: str = ""


def _number(value: Any) -> float | None:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return float(text) if text else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BreakerStore:
    """The shared state of every provider's breaker, moved only by Lua scripts."""

    def __init__(self, bus: Bus, config: BreakerConfig) -> None:
        self.bus = bus
        self.config = config
        self._acquire = bus.redis.register_script(lua_source("actors.routing", "breaker_acquire"))
        self._record = bus.redis.register_script(lua_source("actors.routing", "breaker_record"))
        self._admin = bus.redis.register_script(lua_source("actors.routing", "breaker_admin"))

    def _keys(self, provider: str) -> list[str]:
        names = self.bus.names
        return [breaker_key(names, provider), f"{breaker_key(names, provider)}:window"]

    async def acquire(self, provider: str) -> Decision:
        cfg = self.config
        args = [cfg.half_open_calls, cfg.half_open_max_wait_ms, cfg.open_ms]
        verdict, state, until, moved, reason = await self.bus.run_script(
            self._acquire, self._keys(provider)[:1], args
        )
        return Decision(_text(verdict), _text(state), int(until), _text(reason), _text(moved))

    async def record(
        self,
        provider: str,
        outcome: str,
        *,
        slow: bool = False,
        trial: bool = False,
        kind: str = "",
        retry_after: float | None = None,
    ) -> Transition:
        cfg = self.config
        retry_ms = -1 if retry_after is None else int(retry_after * 1000)
        args = [
            outcome, int(slow), int(trial), kind, retry_ms,
            cfg.window_type, cfg.window_size, cfg.minimum_calls,
            cfg.failure_rate_threshold, cfg.slow_call_rate_threshold,
            cfg.open_ms, cfg.half_open_calls,
        ]  # fmt: skip
        moved, state, until, failure, slow_rate, calls, reason = await self.bus.run_script(
            self._record, self._keys(provider), args
        )
        return Transition(
            _text(moved),
            _text(state),
            int(until),
            _number(failure),
            _number(slow_rate),
            int(calls),
            _text(reason),
        )

    async def reset(self, provider: str, reason: str = "reset by an operator") -> str:
        return _text(await call_script(self._admin, self._keys(provider), ["reset", reason]))

    async def force_open(self, provider: str, reason: str = "forced open by an operator") -> str:
        return _text(await call_script(self._admin, self._keys(provider), ["open", reason]))

    async def read(self, providers: list[str]) -> dict[str, BreakerState]:
        """Every named breaker's state, in one round trip."""
        pipe = self.bus.redis.pipeline(transaction=False)
        for provider in providers:
            pipe.hgetall(breaker_key(self.bus.names, provider))
        found = await pipe.execute()
        return {p: _state(p, raw) for p, raw in zip(providers, found, strict=True)}

    async def announce(
        self,
        provider: str,
        moved: str,
        *,
        reason: str,
        open_until_ms: int = 0,
        failure_rate: float | None = None,
        slow_call_rate: float | None = None,
        calls: int = 0,
        key_invalid: bool = False,
        forced: bool = False,
    ) -> None:
        """Publish a transition as its event (``breaker.opened`` also as an alert)."""
        now = self.bus.now_ms()
        event: Message
        if moved == "opened":
            event = BreakerOpened(
                provider=provider,
                reason=reason,
                open_until_ms=open_until_ms,
                failure_rate=failure_rate,
                slow_call_rate=slow_call_rate,
                calls=calls,
                key_invalid=key_invalid,
                forced=forced,
                ts_ms=now,
            )
        elif moved == "half_open":
            event = BreakerHalfOpen(
                provider=provider, trials=self.config.half_open_calls, ts_ms=now
            )
        elif moved == "closed":
            event = BreakerClosed(provider=provider, reason=reason, ts_ms=now)
        else:
            return
        log.warning("breaker." + moved, provider=provider, reason=reason)
        try:
            await self.bus.publish(self.bus.names.events, event)
            if moved == "opened":
                await self.bus.publish(self.bus.names.alerts, event)
        except REDIS_DOWN as exc:
            log.warning("breaker.event_lost", provider=provider, error=repr(exc))


def _state(provider: str, raw: dict[bytes, bytes]) -> BreakerState:
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    return BreakerState(
        provider=provider,
        state=fields.get("state", "closed"),
        open_until_ms=int(fields.get("open_until", "0") or 0),
        key_invalid=fields.get("key_invalid") == "1",
        forced=fields.get("forced") == "1",
        reason=fields.get("reason", ""),
        version=int(fields.get("version", "0") or 0),
    )


@dataclass
class BreakerView:
    """This process's picture of every breaker, from events and periodic re-reads."""

    store: BreakerStore
    providers: list[str]
    states: dict[str, BreakerState] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read every breaker, then keep re-reading; feed it events with ``on_event``."""
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_loop(), name="breaker-view")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    def get(self, provider: str) -> BreakerState:
        return self.states.get(provider) or BreakerState(provider=provider)

    def refuses(self, provider: str) -> bool:
        return self.get(provider).refuses(self.now_ms())

    def now_ms(self) -> int:
        return self.store.bus.now_ms()

    def learn(self, state: BreakerState) -> None:
        """A fact about a breaker, from an event or a script's answer."""
        self.states[state.provider] = state

    def on_event(self, message: Message) -> None:
        match message:
            case BreakerOpened():
                self.learn(
                    BreakerState(
                        provider=message.provider,
                        state="open",
                        open_until_ms=message.open_until_ms,
                        key_invalid=message.key_invalid,
                        forced=message.forced,
                        reason=message.reason,
                    )
                )
            case BreakerHalfOpen(provider=provider):
                self.learn(BreakerState(provider=provider, state="half_open"))
            case BreakerClosed(provider=provider, reason=reason):
                self.learn(BreakerState(provider=provider, state="closed", reason=reason))
            case _:
                pass

    async def refresh(self) -> None:
        self.states.update(await self.store.read(self.providers))

    async def _refresh_loop(self) -> None:
        every = self.store.config.refresh_ms / 1000
        while True:
            await asyncio.sleep(every)
            started = time.monotonic()
            try:
                await self.refresh()
            except REDIS_DOWN as exc:
                log.warning("breaker.view_stale", error=repr(exc))
            if time.monotonic() - started > every:
                log.warning("breaker.view_refresh_slow", seconds=time.monotonic() - started)
