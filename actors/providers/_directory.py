"""Which models the enabled providers serve: the catalog seen through the config."""

from __future__ import annotations

from typing import Any

from ._catalog import Catalog
from ._config import AzureConfig, ProvidersConfig

__all__ = ["ModelDirectory"]


class ModelDirectory:
    """The enabled providers, each one's default model, and who serves what.

    A provider serves every catalog model of its own, except Azure, which serves only
    the models a deployment is configured for.
    """

    def __init__(self, catalog: Catalog, providers: ProvidersConfig) -> None:
        self.catalog = catalog
        self._providers = providers
        self.enabled = [name for name, p in providers.items() if p.enabled]
        self.default_models = {name: providers.default_model(name) for name in self.enabled}

    def serves(self, provider: str, model: str) -> bool:
        """Whether an enabled provider can serve a model (Azure through a deployment)."""
        if provider not in self.default_models:
            return False
        config = getattr(self._providers, provider)
        if isinstance(config, AzureConfig):
            return config.deployment_for(model, self.default_models[provider]) is not None
        return True

    def resolve(self, model: str) -> list[tuple[str, str]]:
        """The (provider, model) pairs a name stands for; raises ``UnknownModel``."""
        return self.catalog.resolve(model)

    def listing(self) -> list[dict[str, Any]]:
        """OpenAI's model list: every model an enabled provider serves, then the aliases
        and tiers."""
        data = []
        for model_id, info in sorted(self.catalog.models.items()):
            if any(self.serves(p, m) for p, m in self.catalog.resolve(model_id)):
                data.append({"id": model_id, "object": "model", "created": 0,
                             "owned_by": info.provider})  # fmt: skip
        for name in sorted([*self.catalog.aliases, *self.catalog.tiers]):
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "aio"})
        return data
