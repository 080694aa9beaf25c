"""One process of the system: the actors its role runs, wired to one bus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import structlog

from bus import Bus, Message

from .gateway import Gateway
from .limits import Limiter, LimiterStore, QuotaKeeper, QuotaStore
from .messages import CODEC
from .providers import Adapter, AzureConfig, Catalog, build_adapters
from .routing import (
    Admission,
    Breaker,
    BreakerStore,
    BreakerView,
    InFlight,
    LatencyView,
    Planner,
    Router,
)
from .runtime import Actor, Config, Metrics, Supervisor

__all__ = ["Node", "Role"]

log = structlog.get_logger("node")

Role = Literal["all", "gateway", "worker"]


class Node:
    """Runs what ``role`` asks for in this process, sharing one bus and one set of views.

    ``worker``: the limiter, the quota keeper, the router and one breaker per enabled
    provider. ``gateway``: the HTTP gateway. ``all``: both. Processes of any role share
    one Redis; consumer groups spread requests and calls over the workers.
    """

    def __init__(self, config: Config, redis_url: str, role: Role = "all") -> None:
        self.config = config
        self.role = role
        self.bus = Bus(redis_url, CODEC, config.bus)
        self.catalog = Catalog(overrides=config.catalog)
        self.enabled = [name for name, p in config.providers.items() if p.enabled]
        self.default_models = {name: config.providers.default_model(name) for name in self.enabled}
        self.store = BreakerStore(self.bus, config.breaker)
        self.limits = LimiterStore(self.bus, config.limits)
        self.quotas = QuotaStore(self.bus, config.quota)
        self.metrics = Metrics()
        self.breakers = BreakerView(self.store, self.enabled)
        self.latency = LatencyView()
        self.inflight = InFlight()
        self.adapters: dict[str, Adapter] = {}
        self.supervisor: Supervisor | None = None
        self.gateway: Gateway | None = None

    def serves(self, provider: str, model: str) -> bool:
        """Whether an enabled provider can serve a model (Azure through a deployment)."""
        config = getattr(self.config.providers, provider)
        if isinstance(config, AzureConfig):
            return model in config.deployments or (
                bool(config.deployment) and model == self.default_models.get(provider)
            )
        return True

    async def start(self) -> None:
        await self.bus.start()
        try:
            await self.breakers.start()
            await self.bus.tail(self.bus.names.events, self._on_event)
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

    async def _start_workers(self) -> None:
        self.adapters = build_adapters(self.config.providers, self.catalog)
        planner = Planner(
            self.catalog, self.default_models, self.serves, self.config.router, self.latency,
            self.breakers,
        )  # fmt: skip
        providers = {name: p for name, p in self.config.providers.items() if name in self.enabled}
        config = self.config
        admission = Admission(self.bus, config.admission, self.catalog, self.metrics)
        counts = config.admission.count_cache_hits
        factories: list[Callable[[], Actor]] = [
            lambda: Limiter(self.bus, self.limits, concurrency=config.limits.concurrency,
                            count_cache_hits=counts),
            lambda: QuotaKeeper(self.bus, self.quotas, concurrency=config.quota.concurrency,
                                count_cache_hits=counts),
            lambda: Router(self.bus, planner, config.router, providers, admission, self.inflight),
        ]  # fmt: skip
        for adapter in self.adapters.values():
            factories.append(self._breaker_factory(adapter))
        self.supervisor = Supervisor(factories)
        await self.supervisor.start()

    def _breaker_factory(self, adapter: Adapter) -> Callable[[], Actor]:
        def build() -> Actor:
            return Breaker(
                self.bus, adapter, self.store, self.breakers,
                concurrency=self.config.breaker.concurrency, inflight=self.inflight,
            )  # fmt: skip

        return build

    async def _start_gateway(self) -> None:
        gateway = Gateway(self)
        await gateway.start()
        self.gateway = gateway

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work, drain for ``timeout`` seconds, release everything."""
        gateway = self.gateway
        if gateway is not None:
            await gateway.stop(timeout)
            self.gateway = None
        if self.supervisor is not None:
            await self.supervisor.stop(timeout)
            self.supervisor = None
        for adapter in self.adapters.values():
            await adapter.close()
        self.adapters = {}
        await self.breakers.stop()
        await self.bus.close()
        log.info("node.stopped", role=self.role)
