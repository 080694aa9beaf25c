"""Which models the enabled providers serve: the catalog seen through the config."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ._catalog import Catalog, UnknownModel
from ._config import AzureConfig, ProvidersConfig, vendor_of

__all__ = ["ModelDirectory"]

_DATED = re.compile(r"-(20[0-9]{2})-?([01][0-9])-?([0-3][0-9])$")


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

    def deployments(self, vendor: str) -> list[str]:
        """The enabled deployments of a provider (or the one a ``provider:account``
        names), in the config's order."""
        if ":" in vendor:
            return [vendor] if vendor in self.default_models else []
        return [name for name in self.enabled if vendor_of(name) == vendor]

    def serves(self, provider: str, model: str) -> bool:
        """Whether an enabled provider can serve a model (Azure through a deployment)."""
        if provider not in self.default_models:
            return False
        config = self._providers.get(provider)
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
        for model_id in sorted(self.catalog.models):
            if any(self.serves(p, m) for p, m in self.catalog.resolve(model_id)):
                data.append(self._entry(model_id))
        for name in sorted([*self.catalog.aliases, *self.catalog.tiers]):
            data.append(self._entry(name))
        return data

    def entry(self, name: str) -> dict[str, Any] | None:
        """One model (or alias, or tier) as OpenAI's model object, if an enabled
        provider serves it; None if not."""
        try:
            pairs = self.catalog.resolve(name)
        except UnknownModel:
            return None
        if not any(self.serves(p, m) for p, m in pairs):
            return None
        return self._entry(name)

    def _entry(self, name: str) -> dict[str, Any]:
        """``created``: the catalog's ``released`` date, else a date the id or one of its
        dated aliases carries (``-20240307``, ``-2024-08-06``: the earliest), else 0."""
        model = self.catalog.canonical(name)
        if model is None:  # a tier
            return {"id": name, "object": "model", "created": 0, "owned_by": "aio"}
        info = self.catalog.models[model]
        owner = info.provider if model == name else "aio"
        # A dated alias of the model (gpt-4o-2024-08-06) says when it came out, too.
        dated = sorted(a for a, target in self.catalog.aliases.items() if target == model)
        created = _created(info.released, name, model, *dated)
        return {"id": name, "object": "model", "created": created, "owned_by": owner}


def _created(released: str, *names: str) -> int:
    """Unix seconds of a release date (UTC midnight), from the catalog or an id."""
    found = released
    if not found:
        dates = ["-".join(m.groups()) for m in map(_DATED.search, names) if m is not None]
        found = min(dates, default="")
    if not found:
        return 0
    try:
        day = dt.date.fromisoformat(found)
    except ValueError:
        return 0
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
