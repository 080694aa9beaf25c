"""One process of the system: the composition root that builds what its role runs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Literal, TypeVar

import msgspec
import structlog

from bus import Bus, Message

from .admin import Admin
from .auth import Keyring
from .cache import (
    Cache,
    CacheStore,
    Exact,
    Memory,
    SemanticLevel,
    VectorIndex,
    build_embedder,
)
from .client import Client
from .gateway import Gateway
from .health import HealthDesk, HealthProber
from .limits import Grants, Limiter, LimiterStore, QuotaKeeper, QuotaStore
from .messages import CODEC
from .metrics import MetricsActor
from .providers import Adapter, Catalog, ModelDirectory, build_adapters
from .routing import (
    Admission,
    Breaker,
    BreakerStore,
    BreakerView,
    DeploymentLoad,
    InFlight,
    LatencyView,
    Planner,
    Router,
)
from .runtime import (
    Actor,
    Config,
    ConfigError,
    Metrics,
    Supervisor,
    configure_tracing,
    shutdown_tracing,
    tracing_on,
)

__all__ = ["Node", "Role"]

_C = TypeVar("_C", bound=msgspec.Struct)

log = structlog.get_logger("node")

Role = Literal["all", "gateway", "worker"]


class Node:
    """Builds, for ``role``, only what that role runs, on one bus, and hands each part
    only what it uses.

    ``worker``: the limiter, the quota keeper, the cache, the router and one breaker per
    enabled provider, with the views they read (breaker states, latencies, in-flight
    work, the cache's memory) fed by one tail of ``{ns}:events``. ``gateway``: the HTTP
    gateway, which reaches the actors only through the bus (a ``Client`` for requests,
    an ``Admin`` for management): it registers no store's script and keeps no view.
    ``all``: both.
    Processes of any role share one Redis; consumer groups spread the work.

    The stores (``limits``, ``quotas``, ``store``) are built on first use: the worker
    role uses them; tests and tools may read them directly.
    """

    def __init__(self, config: Config, redis_url: str, role: Role = "all") -> None:
        self.config = config
        self.role = role
        self.bus = Bus(redis_url, CODEC, config.bus)
        self.catalog = Catalog(overrides=config.catalog)
        self.models = ModelDirectory(self.catalog, config.providers)
        self.metrics = Metrics(self.bus.redis_errors)
        self.latency = LatencyView()
        self.inflight = InFlight()
        self.memory = Memory(config.cache.l1_max_entries, config.cache.l1_max_bytes)  # L1
        self.vectors: VectorIndex | None = None  # the semantic level's, when it is on
        self.prober: HealthProber | None = None  # the worker's, when health is on
        self.adapters: dict[str, Adapter] = {}
        self.supervisor: Supervisor | None = None
        self.gateway: Gateway | None = None
        self._cleanup = contextlib.AsyncExitStack()
        self._stop_timeout = 10.0

    @property
    def enabled(self) -> list[str]:
        return self.models.enabled

    @property
    def default_models(self) -> dict[str, str]:
        return self.models.default_models

    def serves(self, provider: str, model: str) -> bool:
        return self.models.serves(provider, model)

    @functools.cached_property
    def store(self) -> BreakerStore:
        return BreakerStore(self.bus, self.config.breaker)

    @functools.cached_property
    def breakers(self) -> BreakerView:
        return BreakerView(self.store, self.enabled)

    @functools.cached_property
    def limits(self) -> LimiterStore:
        return LimiterStore(self.bus, self.config.limits, self._tiers(self.config.limits, "limits"))

    @functools.cached_property
    def quotas(self) -> QuotaStore:
        return QuotaStore(self.bus, self.config.quota, self._tiers(self.config.quota, "quota"))

    def _tiers(self, defaults: _C, part: str) -> dict[str, _C]:
        """Each tier's limits (or quotas): the defaults with the tier's own over them."""
        tiers = {}
        for name, tier in self.config.auth.tiers.items():
            given = msgspec.structs.asdict(getattr(tier, part))
            changes = {k: v for k, v in given.items() if v is not msgspec.UNSET}
            tiers[name] = msgspec.structs.replace(defaults, **changes)
        return tiers

    @functools.cached_property
    def answers(self) -> CacheStore:
        return CacheStore(self.bus)

    @functools.cached_property
    def exact(self) -> Exact:
        return Exact(self.memory, self.catalog, self.config.cache, self.answers)

    async def start(self) -> None:
        """Start what the role runs; on a failure, stop what had started and raise."""
        tracing = self.config.tracing
        if not tracing_on() and configure_tracing(
            enabled=tracing.enabled, endpoint=tracing.endpoint, service_name=tracing.service_name
        ):
            self._cleanup.callback(shutdown_tracing)  # spans still buffered go out
        await self.bus.start()
        self._cleanup.push_async_callback(self._close_bus)
        try:
            if self.role in ("all", "worker"):
                await self._start_workers()
            if self.role in ("all", "gateway"):
                await self._start_gateway()
        except BaseException:
            await self.stop()
            raise
        log.info("node.started", role=self.role, node=self.bus.node, providers=self.enabled)

    def _on_event(self, message: Message) -> None:
        # One tail of {ns}:events feeds every view of this process.
        self.breakers.on_event(message)
        self.latency.on_event(message)
        self.inflight.on_event(message)
        self.memory.on_event(message)
        if self.vectors is not None:
            self.vectors.on_event(message)
        if self.prober is not None:
            self.prober.observe(message)

    async def _start_workers(self) -> None:
        await self.breakers.start()
        self._cleanup.push_async_callback(self.breakers.stop)
        await self.bus.tail(self.bus.names.events, self._on_event)  # stopped with the bus
        self.adapters = build_adapters(self.config.providers, self.catalog)
        for adapter in self.adapters.values():
            self._cleanup.push_async_callback(adapter.close)
        config = self.config
        if config.health.enabled and self.adapters:
            self.prober = HealthProber(self.adapters, config.health, bus=self.bus)
        load = None
        if config.router.balance != "strategy":
            headroom = {name: grants.headroom for name, grants in self.grants.items()}
            steps = {name: 1 / rpm for name in self.grants
                     if (rpm := config.providers.get(name).requests_per_minute)}  # fmt: skip
            load = DeploymentLoad(self.bus, self.enabled, headroom, steps=steps)
            await load.start()
            self._cleanup.push_async_callback(load.stop)
        planner = Planner(self.catalog, self.default_models, self.serves, config.router,
                          self.latency, self.breakers, self.prober,
                          deployments=self.models.deployments, load=load)  # fmt: skip
        providers = {name: p for name, p in config.providers.items() if name in self.enabled}
        caching = config.cache.enabled
        admission = Admission(self.bus, config.admission, self.catalog, self.metrics,
                              cache=caching,
                              default_max_tokens=config.router.default_max_tokens,
                              tier_waits={name: tier.wait_on_limit
                                          for name, tier in config.auth.tiers.items()
                                          if tier.wait_on_limit is not None})  # fmt: skip
        counts = config.admission.count_cache_hits
        factories: list[Callable[[], Actor]] = [
            lambda: Limiter(self.bus, self.limits, concurrency=config.limits.concurrency,
                            count_cache_hits=counts),
            lambda: QuotaKeeper(self.bus, self.quotas, concurrency=config.quota.concurrency,
                                count_cache_hits=counts),
            lambda: Router(self.bus, planner, config.router, providers, admission, self.inflight,
                           recall=self.exact.recall if caching else None),
        ]  # fmt: skip
        if caching:
            semantic = await self._semantic()
            factories.append(self._cache_factory(semantic))
        for adapter in self.adapters.values():
            factories.append(self._breaker_factory(adapter))
        factories.append(
            lambda: MetricsActor(
                self.bus,
                providers=self.enabled,
                breakers=self._breaker_states,
                timezone=config.quota.timezone,
                concurrency=64,
            )
        )
        factories.append(lambda: Keyring(self.bus, config.auth))
        prober = self.prober
        if prober is not None:
            factories.append(
                lambda: HealthDesk(self.bus, prober, concurrency=config.health.concurrency)
            )
        supervisor = Supervisor(factories)
        await supervisor.start()
        self.supervisor = supervisor
        self._cleanup.push_async_callback(self._stop_supervisor)
        if prober is not None:  # stopped before the adapters it probes are closed
            await prober.start()
            self._cleanup.push_async_callback(prober.stop)

    async def _semantic(self) -> SemanticLevel | None:
        """The semantic level, its index loaded from Redis, when it is on."""
        settings = self.config.cache.semantic
        if not settings.enabled:
            return None
        try:
            embedder = build_embedder(settings, self.config.providers)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._cleanup.push_async_callback(embedder.close)
        self.vectors = VectorIndex(embedder.dimensions)
        loaded = await self.vectors.load(self.answers.vectors_kept(), self.bus.now_ms())
        log.info("cache.vectors_loaded", vectors=loaded)
        return SemanticLevel(settings, embedder, self.vectors, self.answers, self.memory)

    def _breaker_states(self) -> dict[str, str]:
        return {provider: self.breakers.get(provider).state for provider in self.enabled}

    def _cache_factory(self, semantic: SemanticLevel | None) -> Callable[[], Actor]:
        def build() -> Actor:
            return Cache(self.bus, self.answers, self.exact, self.config.cache, semantic)

        return build

    @functools.cached_property
    def grants(self) -> dict[str, Grants]:
        """The deployments with limits of their own, and those limits."""
        found = {}
        for name in self.enabled:
            settings = self.config.providers.get(name)
            if settings.requests_per_minute is not None or settings.tokens_per_minute is not None:
                found[name] = Grants(self.bus, name, settings.requests_per_minute,
                                     settings.tokens_per_minute)  # fmt: skip
        return found

    def _breaker_factory(self, adapter: Adapter) -> Callable[[], Actor]:
        grants = self.grants.get(adapter.name)

        def build() -> Actor:
            return Breaker(
                self.bus, adapter, self.store, self.breakers,
                concurrency=self.config.breaker.concurrency, inflight=self.inflight,
                grants=grants,
            )  # fmt: skip

        return build

    async def _start_gateway(self) -> None:
        config = self.config
        gateway = Gateway(
            config.gateway,
            client=Client(self.bus, timeout_ms=config.router.request_timeout_ms),
            admin=Admin(self.bus, self.enabled),
            models=self.models,
            bounds=config.router,
            metrics=self.metrics,
            ready=self.ready,
            auth=config.auth,
            probing=config.health.enabled,
        )
        await gateway.start()
        self.gateway = gateway
        self._cleanup.push_async_callback(self._stop_gateway)

    async def ready(self) -> str:
        """Why this process is not ready to serve ("" when it is): Redis must answer
        and every actor it runs must be running."""
        try:
            async with asyncio.timeout(self.config.bus.command_timeout_ms / 1000):
                await self.bus.redis.ping()
        except Exception as exc:
            return f"Redis does not answer: {type(exc).__name__}"
        if self.supervisor is not None:
            down = [actor.name for actor in self.supervisor.actors if not actor.alive]
            if down:
                return f"actors not running: {', '.join(down)}"
        return ""

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work, drain for ``timeout`` seconds, release everything: in the
        reverse order of start, every step attempted even when one fails (the first
        failure is raised at the end, the others chained to it)."""
        self._stop_timeout = timeout
        try:
            await self._cleanup.aclose()
        finally:
            self._cleanup = contextlib.AsyncExitStack()
            log.info("node.stopped", role=self.role)

    async def _stop_gateway(self) -> None:
        if self.gateway is not None:
            gateway, self.gateway = self.gateway, None
            await gateway.stop(self._stop_timeout)

    async def _stop_supervisor(self) -> None:
        if self.supervisor is not None:
            supervisor, self.supervisor = self.supervisor, None
            await supervisor.stop(self._stop_timeout)

    async def _close_bus(self) -> None:
        self.adapters = {}
        await self.bus.close()
