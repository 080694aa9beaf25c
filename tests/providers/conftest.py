"""The simulator, in-process, and an adapter factory pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from actors.providers import Adapter, AzureConfig, Catalog, ProviderConfig, Secret, adapter_class
from actors.providers.simulator import Simulator

# A model of each provider that the catalog knows (Azure serves OpenAI's).
MODELS = {
    "openai": "gpt-4o",
    "azure": "gpt-4o",
    "anthropic": "claude-3-haiku",
    "google": "gemini-1.5-flash",
}
KEYS = {
    "openai": "sk-test-1234",
    "azure": "az-key-5678",
    "anthropic": "sk-ant-9012",
    "google": "AIza-3456",
}


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(seed=7, context_windows={"gpt-4o": 128_000}) as sim:
        yield sim


MakeAdapter = Callable[..., Awaitable[Adapter]]


def provider_config(name: str, base: str, **overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {"api_key": Secret(KEYS[name]), "timeout_ms": 2_000} | overrides
    if name == "azure":
        fields.setdefault("deployment", "gpt4o-deployment")
        return AzureConfig(base_url=base, **fields)
    url = base + "/v1" if name == "openai" else base
    return ProviderConfig(base_url=url, **fields)


@pytest.fixture
async def make_adapter(simulator: Simulator) -> AsyncIterator[MakeAdapter]:
    adapters: list[Adapter] = []

    async def make(name: str, *, base: str | None = None, **overrides: Any) -> Adapter:
        config = provider_config(name, base or simulator.url, **overrides)
        adapter = adapter_class(name)(config, Catalog(), MODELS[name])  # type: ignore[arg-type]
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        await adapter.close()
