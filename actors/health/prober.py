"""The health prober: probes providers on a schedule and judges their health.

Embeddable in any asyncio program, with no bus and no server::

    prober = HealthProber.from_config()          # keys from OPENAI_API_KEY, ...
    report = await prober.probe_once()           # one round: a HealthReport
    async with prober:                           # probing in the background
        async for change in prober.changes():    # ProviderHealth, on each change
            ...

With a bus (in a node), one process per provider probes it at a time (a lease in
Redis; another takes over within about one interval when it dies), each finding is
published (``provider.health`` on ``{ns}:events``, kept in ``{ns}:health:status``),
a move to ``down`` raises ``provider.unhealthy`` on ``{ns}:alerts`` and a move back
``provider.recovered``; every process learns the others' findings from the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import msgspec
import structlog

from bus import Bus, Message, cancel_and_wait, lua_source

from ..messages import (
    HealthReport,
    ProviderHealth,
    ProviderRecovered,
    ProviderUnhealthy,
    RequestCompleted,
)
from ..providers import (
    Adapter,
    Catalog,
    ProbeResult,
    ProviderError,
    ProviderRequest,
    ProvidersConfig,
    build_adapters,
)
from ..runtime import Config, HealthConfig, load_config
from ._judge import Traffic, judge

__all__ = ["HealthProber"]

log = structlog.get_logger("health")

_KEPT_PROBES = 8
_decode_health = msgspec.json.Decoder(ProviderHealth).decode


class HealthProber:
    """Probes each provider with its adapter's ``probe()`` (a models listing: no tokens)
    or, with ``completion_probe``, a one-token completion; judges each from its last
    probes and the real traffic it is told of (``observe``)."""

    def __init__(
        self,
        adapters: Mapping[str, Adapter],
        config: HealthConfig | None = None,
        *,
        bus: Bus | None = None,
        owns_adapters: bool = False,
    ) -> None:
        self.adapters = dict(adapters)
        self.config = config or HealthConfig()
        self.bus = bus
        self._owns = owns_adapters
        self._probes: dict[str, deque[ProbeResult]] = {}
        self._health: dict[str, ProviderHealth] = {}
        self._traffic = Traffic(self.config.traffic_window_s * 1000)
        self._watchers: list[asyncio.Queue[ProviderHealth]] = []
        self._task: asyncio.Task[None] | None = None
        self._lease: Any = None
        self._swap: Any = None
        if bus is not None:
            self._lease = bus.redis.register_script(lua_source("actors.health", "lease"))
            self._swap = bus.redis.register_script(lua_source("actors.health", "swap"))
        self._held: set[str] = set()  # the providers whose lease this process holds

    @classmethod
    def from_config(
        cls,
        config: Config | None = None,
        *,
        providers: ProvidersConfig | None = None,
        bus: Bus | None = None,
    ) -> HealthProber:
        """A prober of the configured providers (``load_config()``: the environment's
        keys when no config is given), or of ``providers`` (explicit keys, base URLs)."""
        config = config or load_config()
        adapters = build_adapters(providers or config.providers, Catalog(overrides=config.catalog))
        return cls(adapters, config.health, bus=bus, owns_adapters=True)

    # -- what it knows ---------------------------------------------------------------

    @property
    def latest(self) -> HealthReport:
        """Every provider's latest finding (this process's, or another's)."""
        found = [self._health[name] for name in sorted(self._health) if name in self.adapters]
        checked = max((h.checked_at_ms for h in found), default=0)
        return HealthReport(providers=found, checked_at_ms=checked)

    def is_down(self, provider: str) -> bool:
        known = self._health.get(provider)
        return known is not None and known.status == "down"

    def probe_latency(self, provider: str) -> float | None:
        known = self._health.get(provider)
        return known.latency_ms if known is not None else None

    def observe(self, message: Message) -> None:
        """Real traffic (``request.completed``) and other processes' findings
        (``provider.health``), from the node's tail of ``{ns}:events``."""
        if isinstance(message, RequestCompleted):
            self._traffic.observe(message)
        elif isinstance(message, ProviderHealth) and message.provider in self.adapters:
            known = self._health.get(message.provider)
            if known is None or message.checked_at_ms >= known.checked_at_ms:
                self._learn(message)

    async def changes(self) -> AsyncIterator[ProviderHealth]:
        """Each finding that changes a provider's status, as it comes."""
        queue: asyncio.Queue[ProviderHealth] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(queue)

    # -- probing ---------------------------------------------------------------------

    async def probe_once(
        self, providers: Iterable[str] | None = None, *, single: bool = False
    ) -> HealthReport:
        """Probe the providers (all by default) now, at once; the report of them.
        ``single``: this round alone decides (a failed probe is ``down`` at once, as a
        one-off check wants), not the probes before it."""
        if providers is None:
            names = list(self.adapters)
        else:  # none: none (a process that holds no lease probes nothing)
            names = [n for n in providers if n in self.adapters]
        found = await asyncio.gather(*(self._probe(name, single) for name in names))
        return HealthReport(providers=list(found), checked_at_ms=self._now())

    async def _probe(self, name: str, single: bool = False) -> ProviderHealth:
        result = await self._call(self.adapters[name])
        probes = self._probes.setdefault(name, deque(maxlen=_KEPT_PROBES))
        probes.append(result)
        config = msgspec.structs.replace(self.config, down_after=1) if single else self.config
        # A provider found down (by this process or the one that probed it before) stays
        # down while its probes fail: a new prober starts from that finding.
        before = self._health.get(name)
        health = judge(name, probes, self._traffic, config, self._now(),
                       was_down=before is not None and before.status == "down")  # fmt: skip
        self._learn(health)
        if self.bus is not None:
            await self._publish(health)
        return health

    async def _call(self, adapter: Adapter) -> ProbeResult:
        timeout = self.config.timeout_ms / 1000
        if not self.config.completion_probe:
            started = asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(timeout):
                    return await adapter.probe()
            except TimeoutError:
                waited = (asyncio.get_running_loop().time() - started) * 1000
                return ProbeResult(provider=adapter.name, ok=False, latency_ms=waited,
                                   detail=f"timeout: no answer within {timeout:g}s")  # fmt: skip
        # One call per deployment (Azure serves each model from its own): the provider
        # is fine only when every deployment answers, and the finding names the one
        # that did not.
        models = adapter.probe_models()
        started = asyncio.get_running_loop().time()
        answers = await asyncio.gather(*(self._ask(adapter, m, timeout) for m in models))
        waited = (asyncio.get_running_loop().time() - started) * 1000
        failed = [(m, why) for m, why in zip(models, answers, strict=True) if why is not None]
        if not failed:
            detail = f"answered ({len(models)} model(s), 1 token each)"
            return ProbeResult(provider=adapter.name, ok=True, latency_ms=waited, detail=detail)
        if len(models) == 1:
            detail = failed[0][1]
        else:
            detail = "; ".join(f"{model}: {why}" for model, why in failed)
        return ProbeResult(provider=adapter.name, ok=False, latency_ms=waited, detail=detail)

    @staticmethod
    async def _ask(adapter: Adapter, model: str, timeout: float) -> str | None:
        """A one-token completion of ``model``; None when answered, else why not."""
        try:
            async with asyncio.timeout(timeout):
                await adapter.generate(ProviderRequest(prompt="ping", max_tokens=1, model=model))
        except ProviderError as exc:
            return f"{exc.kind}: {exc.message}"
        except TimeoutError:
            return f"timeout: no answer within {timeout:g}s"
        except Exception as exc:
            return repr(exc)
        return None

    def _learn(self, health: ProviderHealth) -> None:
        before = self._health.get(health.provider)
        self._health[health.provider] = health
        if before is None or before.status != health.status:
            for queue in self._watchers:
                queue.put_nowait(health)

    def _now(self) -> int:
        """Milliseconds since the epoch: Redis's clock with a bus, else this one's."""
        return self.bus.now_ms() if self.bus is not None else int(time.time() * 1000)

    async def _publish(self, health: ProviderHealth) -> None:
        """Tell every process; alert on a move to or from down."""
        assert self.bus is not None
        names = self.bus.names
        try:
            assert self._swap is not None
            previous_raw = await self.bus.run_script(
                self._swap, [self._status_key()], [health.provider, msgspec.json.encode(health)]
            )
        except Exception as exc:  # Redis away: the event may still go out
            log.info("health.status_not_kept", error=repr(exc))
            previous_raw = None
        previous = _decode_or_none(previous_raw)
        self.bus.publish_soon(names.events, health)
        was_down = previous is not None and previous.status == "down"
        if health.status == "down" and not was_down:
            alert: Message = ProviderUnhealthy(
                provider=health.provider, status=health.status, why=health.why,
                latency_ms=health.latency_ms, error_rate=health.error_rate, ts_ms=self._now(),
            )  # fmt: skip
            self.bus.publish_soon(names.alerts, alert)
            log.warning("health.down", provider=health.provider, why=health.why)
        elif was_down and health.status != "down":
            alert = ProviderRecovered(provider=health.provider, status=health.status,
                                      why=health.why, latency_ms=health.latency_ms,
                                      ts_ms=self._now())  # fmt: skip
            self.bus.publish_soon(names.alerts, alert)
            log.warning("health.recovered", provider=health.provider, status=health.status)

    def _status_key(self) -> str:
        assert self.bus is not None
        return f"{self.bus.names.ns}:health:status"

    # -- in the background -------------------------------------------------------------

    async def start(self) -> None:
        """Load what other processes found (with a bus), then probe on the schedule."""
        if self.bus is not None:
            with contextlib.suppress(Exception):
                kept: dict[Any, Any] = await self.bus.redis.hgetall(self._status_key())
                for raw in kept.values():
                    found = _decode_or_none(raw)
                    if found is not None:
                        self.observe(found)
        self._task = asyncio.create_task(self._run(), name="health-prober")

    async def stop(self) -> None:
        """Stop probing; leases held are given up at once (another process takes over
        at its next round)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self.bus is not None and self._held:
            ns = self.bus.names.ns
            for name in self._held:
                with contextlib.suppress(Exception):
                    key = f"{ns}:health:lease:{name}"
                    if await self.bus.redis.get(key) == self.bus.node.encode():
                        await self.bus.redis.delete(key)
            self._held = set()
        if self._owns:
            for adapter in self.adapters.values():
                with contextlib.suppress(Exception):
                    await adapter.close()

    async def __aenter__(self) -> HealthProber:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        config = self.config
        while True:
            try:
                await self.probe_once(await self.mine())
            except Exception as exc:  # never dies of one bad round
                log.warning("health.round_failed", error=repr(exc))
            pause = config.interval_ms + random.uniform(0, config.jitter_ms)
            await asyncio.sleep(pause / 1000)

    async def mine(self) -> list[str]:
        """The providers this process probes this round (all, without a bus)."""
        if self.bus is None or self._lease is None:
            return list(self.adapters)
        config = self.config
        # Two rounds long (a round: the probes, then the pause), renewed every round: it
        # lapses only when its holder has stopped.
        lease_ms = 2 * (config.interval_ms + config.jitter_ms + config.timeout_ms)
        mine = []
        for name in self.adapters:
            key = f"{self.bus.names.ns}:health:lease:{name}"
            try:
                held = await self.bus.run_script(self._lease, [key], [self.bus.node, lease_ms])
            except Exception as exc:
                log.info("health.lease_unknown", provider=name, error=repr(exc))
                continue
            if held:
                mine.append(name)
        self._held = set(mine)
        return mine


def _decode_or_none(raw: Any) -> ProviderHealth | None:
    if raw is None:
        return None
    try:
        return _decode_health(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
