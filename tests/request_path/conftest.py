"""A whole node (gateway, router, breakers) on the test's Redis, against the simulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import openai
import pytest

from actors.node import Node, Role
from actors.providers import AzureConfig, ProviderConfig, ProvidersConfig, Secret
from actors.providers.simulator import Simulator
from actors.runtime.config import (
    LIMIT_FIELDS,
    QUOTA_FIELDS,
    AdmissionConfig,
    AuthConfig,
    BreakerConfig,
    CacheConfig,
    Config,
    GatewayConfig,
    HealthConfig,
    LimitsConfig,
    QuotaConfig,
    RouterConfig,
)
from bus import BusConfig
from tests._audit import AUDIT, scan_namespace_async, secret
from tests._cluster import async_client
from tests.conftest import FAST

MakeNode = Callable[..., Awaitable[Node]]

# The admin token of every test node, and the header that carries it.
ADMIN_TOKEN = secret("admin")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# Tests of routing and breakers send many requests quickly: no limits, no quotas
# unless a test sets them.
NO_LIMITS = LimitsConfig(**dict.fromkeys(LIMIT_FIELDS))
NO_QUOTAS = QuotaConfig(**dict.fromkeys(QUOTA_FIELDS))
# ... and every request reaches a provider: no cache unless a test turns it on.
NO_CACHE = CacheConfig(enabled=False)
# ... and no prober calling the simulator in between (its own tests turn it on).
NO_HEALTH = HealthConfig(enabled=False)


def providers_for(url: str, names: tuple[str, ...], **overrides: Any) -> ProvidersConfig:
    """Provider settings pointing at the simulator; every provider gets a key.

    The timeout is generous, so that no call times out on a slow or busy machine;
    tests of timeouts set their own.
    """
    timeout = overrides.pop("timeout_ms", 10_000)
    retries = overrides.pop("max_retries", 1)
    deployments = overrides.pop("azure_deployments", {})  # model -> deployment
    azure_extra = overrides.pop("azure", {})  # more of Azure's own settings
    common: dict[str, Any] = {"timeout_ms": timeout, "max_retries": retries}
    configs: dict[str, Any] = {}
    if "openai" in names:
        configs["openai"] = ProviderConfig(
            api_key=Secret(secret("sk-o")), base_url=f"{url}/v1", default_model="gpt-4o", **common
        )
    if "azure" in names:
        configs["azure"] = AzureConfig(
            api_key=Secret(secret("az")), base_url=url, deployment="gpt4o", default_model="gpt-4o",
            deployments=deployments, **common, **azure_extra,
        )  # fmt: skip
    if "anthropic" in names:
        configs["anthropic"] = ProviderConfig(
            api_key=Secret(secret("sk-a")), base_url=url, default_model="claude-3-haiku", **common
        )
    if "google" in names:
        configs["google"] = ProviderConfig(
            api_key=Secret(secret("g")), base_url=url, default_model="gemini-1.5-flash", **common
        )
    return ProvidersConfig(**configs)


def bus_config(ns: str) -> BusConfig:
    return msgspec.structs.replace(FAST, namespace=ns)


# Admission asks the limiter and the quota keeper; a request whose verdicts take longer
# than the timeout is refused as unavailable. The default (500 ms) is tight for a busy
# machine answering many requests at once; tests of that timeout set their own.
PATIENT_ADMISSION = AdmissionConfig(timeout_ms=10_000)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(seed=3) as sim:
        yield sim


@pytest.fixture
async def make_node(server_url: str, simulator: Simulator) -> AsyncIterator[MakeNode]:
    nodes: list[Node] = []
    ns = f"rp{uuid.uuid4().hex[:10]}"

    async def make(
        *,
        providers: tuple[str, ...] = ("openai", "anthropic", "google"),
        role: Role = "all",
        router: RouterConfig | None = None,
        breaker: BreakerConfig | None = None,
        provider_overrides: dict[str, Any] | None = None,
        limits: LimitsConfig = NO_LIMITS,
        quota: QuotaConfig = NO_QUOTAS,
        admission: AdmissionConfig | None = None,
        gateway: GatewayConfig | None = None,
        cache: CacheConfig = NO_CACHE,
        health: HealthConfig = NO_HEALTH,
        auth: AuthConfig | None = None,
    ) -> Node:
        config = Config(
            bus=bus_config(ns),
            providers=providers_for(simulator.url, providers, **(provider_overrides or {})),
            # No exploration unless a test turns it on: the order of candidates is
            # then what the strategy alone says.
            router=router or RouterConfig(retry_base_ms=10, retry_max_ms=50, explore_share=0),
            breaker=breaker or BreakerConfig(refresh_ms=200),
            gateway=gateway or GatewayConfig(port=0, admin_token=Secret(ADMIN_TOKEN)),
            limits=limits,
            quota=quota,
            admission=admission or PATIENT_ADMISSION,
            cache=cache,
            health=health,
            auth=auth or AuthConfig(),
        )
        node = Node(config, server_url, role)
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in reversed(nodes):
        await node.stop(timeout=2.0)
    if nodes:
        await _clean(server_url, ns)


async def _clean(url: str, ns: str) -> None:
    client = async_client(url)
    keys = await scan_namespace_async(client, ns)  # no secret may be left in Redis
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose every response body is scanned for secrets."""

    async def scanned(_session: Any, _context: Any, params: Any) -> None:
        AUDIT.scan(f"a response to {params.method} {params.url}", params.chunk)

    trace = aiohttp.TraceConfig()
    trace.on_response_chunk_received.append(scanned)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield session


@pytest.fixture
async def sdk(make_node: MakeNode) -> AsyncIterator[tuple[Node, openai.AsyncOpenAI]]:
    """The official OpenAI SDK on a node's /v1 (three providers, round robin)."""
    node = await make_node(
        providers=("openai", "anthropic", "google"),
        router=RouterConfig(strategy="round_robin", retry_base_ms=10),
        provider_overrides={"max_retries": 0},
    )
    assert node.gateway is not None
    client = openai.AsyncOpenAI(api_key="unused", base_url=f"{node.gateway.url}/v1", max_retries=0)
    yield node, client
    await client.close()
