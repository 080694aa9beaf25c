"""Build the enabled adapters from config, and say which providers are off and why.

Adapter modules are imported on first use: the SDKs take over a second to import,
which commands that need no provider (``schema``, ``--help``) should not pay.
"""

from __future__ import annotations

import importlib

import structlog

from ._adapter import Adapter
from ._catalog import Catalog
from ._config import AzureConfig, ProvidersConfig, vendor_of

__all__ = ["ADAPTER_CLASSES", "adapter_class", "build_adapters"]

log = structlog.get_logger("providers")

ADAPTER_CLASSES: dict[str, str] = {
    "openai": "actors.providers._openai:OpenAIAdapter",
    "azure": "actors.providers._azure:AzureOpenAIAdapter",
    "anthropic": "actors.providers._anthropic:AnthropicAdapter",
    "google": "actors.providers._google:GoogleAdapter",
}


def adapter_class(name: str) -> type[Adapter]:
    """The adapter class of a provider (importing its SDK on first use)."""
    module, _, attribute = ADAPTER_CLASSES[name].partition(":")
    cls: type[Adapter] = getattr(importlib.import_module(module), attribute)
    return cls


def build_adapters(config: ProvidersConfig, catalog: Catalog) -> dict[str, Adapter]:
    """One adapter per provider that has a key; the others are logged as disabled."""
    adapters: dict[str, Adapter] = {}
    for name, provider in config.items():
        if not provider.enabled:
            missing = "API key"
            if isinstance(provider, AzureConfig) and provider.api_key:
                missing = "endpoint (AZURE_OPENAI_ENDPOINT)"
            log.info("provider.disabled", provider=name, reason=f"no {missing} configured")
            continue
        default_model = config.default_model(name)
        adapter = adapter_class(vendor_of(name))(provider, catalog, default_model)
        adapter.name = name  # a deployment's own: its breaker, health and errors name it
        adapters[name] = adapter
        log.info(
            "provider.enabled",
            provider=name,
            base_url=provider.base_url or "(the provider's own)",
            default_model=default_model,
            timeout_ms=provider.timeout_ms,
        )
    return adapters
