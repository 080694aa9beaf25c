"""The simulator's knobs, per provider, and what they decide for each call."""

from __future__ import annotations

import asyncio
import random
from typing import Annotated, Any, Literal

import msgspec

__all__ = ["PROVIDERS", "Fate", "Knobs", "SimulatorState"]

PROVIDERS = ("openai", "azure", "anthropic", "google")

Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Fate = Literal["ok", "auth", "hang", "rate_limited", "server_error"]


class Knobs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one simulated provider behaves. Rates are shares of calls, from 0 to 1."""

    latency_ms: NonNegative = 0  # before the answer (before the first chunk of a stream)
    jitter_ms: NonNegative = 0  # plus a uniform random 0..jitter_ms
    chunk_delay_ms: NonNegative = 0  # between the chunks of a stream
    error_rate: Rate = 0  # answered 500 or 503
    rate_limit_rate: Rate = 0  # answered 429 with a Retry-After header
    retry_after_s: NonNegative = 1  # the Retry-After of those 429s
    hang_rate: Rate = 0  # never answered
    cut_rate: Rate = 0  # streams cut midway
    cut_mode: Literal["abort", "clean"] = "abort"  # connection reset, or a clean end too soon
    auth_failure: bool = False  # every call answered 401
    context_window: int = 0  # input limit in tokens; 0: the model's, from the catalog
    paused: bool = False  # calls wait before answering until this is set back to false


class SimulatorState:
    """Knobs and request counters of every simulated provider."""

    def __init__(self, knobs: dict[str, Knobs] | None = None, seed: int | None = None) -> None:
        self.knobs: dict[str, Knobs] = {p: Knobs() for p in PROVIDERS}
        self.knobs.update(knobs or {})
        self.calls: dict[str, int] = dict.fromkeys(PROVIDERS, 0)
        # Calls hanging right now: one ends when its client gives up and disconnects.
        self.hanging: dict[str, int] = dict.fromkeys(PROVIDERS, 0)
        self.last: dict[str, Any] = {}  # the last generation call each provider parsed
        self._random = random.Random(seed)
        self._stopping: asyncio.Event | None = None
        self._resumed: dict[str, asyncio.Event] = {}
        self.paused_calls: dict[str, int] = dict.fromkeys(PROVIDERS, 0)  # waiting now

    async def hung(self, provider: str) -> None:
        """Wait as a hung provider does: until the simulator stops (or the client leaves)."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
        self.hanging[provider] += 1
        try:
            await self._stopping.wait()
        finally:
            self.hanging[provider] -= 1

    async def unpaused(self, provider: str) -> None:
        """Wait while the provider is paused (``paused`` knob)."""
        if not self.knobs[provider].paused:
            return
        resumed = self._resumed.setdefault(provider, asyncio.Event())
        self.paused_calls[provider] += 1
        try:
            await resumed.wait()
        finally:
            self.paused_calls[provider] -= 1

    def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        for resumed in self._resumed.values():
            resumed.set()

    def update(self, provider: str, changes: dict[str, object]) -> Knobs:
        """Change some knobs of one provider (a partial update); raises ``ValueError``."""
        if provider not in self.knobs:
            raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
        merged = msgspec.structs.asdict(self.knobs[provider]) | changes
        self.knobs[provider] = msgspec.convert(merged, Knobs)
        if not self.knobs[provider].paused:
            self._resumed.pop(provider, asyncio.Event()).set()
        return self.knobs[provider]

    def reset(self) -> None:
        self.knobs = {p: Knobs() for p in PROVIDERS}
        for resumed in self._resumed.values():
            resumed.set()
        self._resumed = {}
        self.calls = dict.fromkeys(PROVIDERS, 0)  # hanging counts live calls: kept
        self.last = {}

    def fate(self, provider: str) -> Fate:
        """Count a call and decide how it goes."""
        self.calls[provider] += 1
        knobs = self.knobs[provider]
        if knobs.auth_failure:
            return "auth"
        roll = self._random.random()
        for fate, rate in (
            ("hang", knobs.hang_rate),
            ("rate_limited", knobs.rate_limit_rate),
            ("server_error", knobs.error_rate),
        ):
            if roll < rate:
                return fate  # type: ignore[return-value]
            roll -= rate
        return "ok"

    def cut(self, provider: str) -> bool:
        return self._random.random() < self.knobs[provider].cut_rate

    def server_error_status(self) -> int:
        return self._random.choice((500, 503))

    def delay(self, provider: str) -> float:
        """Seconds to wait before answering."""
        knobs = self.knobs[provider]
        return (knobs.latency_ms + self._random.uniform(0, knobs.jitter_ms)) / 1000
