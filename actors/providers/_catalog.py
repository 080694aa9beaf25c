"""The model catalog: models, prices and limits as data; aliases and tiers."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Annotated, Literal

import msgspec

from ._features import FEATURES
from ._types import Usage

__all__ = ["Catalog", "CatalogData", "ModelInfo", "UnknownModel"]

Vendor = Literal["openai", "anthropic", "google"]
Price = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(gt=0)]

# The providers that can serve a vendor's models (Azure serves OpenAI's).
SERVED_BY: dict[str, tuple[str, ...]] = {
    "openai": ("openai", "azure"),
    "anthropic": ("anthropic",),
    "google": ("google",),
}


class UnknownModel(LookupError):
    """A name that is no model, alias or tier of the catalog."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown model {name!r}: not a model, alias or tier of the catalog")
        self.name = name


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One model: who makes it, its limits, its price per million tokens."""

    provider: Vendor
    # "embedding": a model of /v1/embeddings (never a chat candidate, nor one of its).
    kind: Literal["chat", "embedding"] = "chat"
    dimensions: Annotated[int, msgspec.Meta(ge=0)] = 0  # an embedding's, by default
    context_window: Positive
    max_output_tokens: Positive
    input_per_mtok: Price
    output_per_mtok: Price
    streaming: bool = True
    released: str = ""  # YYYY-MM-DD, when known (/v1/models' `created`)
    # max_tokens for a request that sets none (0: router.default_max_tokens).
    default_max_tokens: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Features (see _features) beyond its vendor's ([features]), and ones it lacks.
    adds: list[str] = []
    lacks: list[str] = []
    source: str = ""
    note: str = ""

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for a call with these token counts."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class CatalogData(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The catalog as stored (the shipped TOML, or the config's [catalog] overrides)."""

    models: dict[str, ModelInfo] = {}
    aliases: dict[str, str] = {}
    tiers: dict[str, list[str]] = {}
    # The features of each vendor's models, unless a model adds or lacks some.
    features: dict[str, list[str]] = {}


def shipped() -> CatalogData:
    """The catalog that ships with the package (``catalog.toml``)."""
    text = (resources.files("actors.providers") / "catalog.toml").read_text(encoding="utf-8")
    return msgspec.convert(tomllib.loads(text), CatalogData)


class Catalog:
    """Look up models by id, alias or tier; price a call.

    ``overrides`` (from config) add models, aliases and tiers or replace shipped
    ones by name. Every alias and tier must name known models (``ValueError``).
    """

    def __init__(self, base: CatalogData | None = None, overrides: CatalogData | None = None):
        base = base if base is not None else shipped()
        extra = overrides or CatalogData()
        self.models = {**base.models, **extra.models}
        self.aliases = {**base.aliases, **extra.aliases}
        self.tiers = {**base.tiers, **extra.tiers}
        vendors = {**base.features, **extra.features}
        for vendor, names in vendors.items():
            _check_features(f"catalog features of {vendor!r}", names)
        self.embedding_models = frozenset(
            name for name, info in self.models.items() if info.kind == "embedding"
        )
        self._features: dict[str, frozenset[str]] = {}
        for name, info in self.models.items():
            _check_features(f"catalog model {name!r}", [*info.adds, *info.lacks])
            own = set(vendors.get(info.provider, ())) | set(info.adds)
            self._features[name] = frozenset(own - set(info.lacks))
        for alias, target in self.aliases.items():
            if target not in self.models:
                raise ValueError(f"catalog alias {alias!r} names unknown model {target!r}")
        for tier, members in self.tiers.items():
            for member in members:
                if self.canonical(member) is None:
                    raise ValueError(f"catalog tier {tier!r} names unknown model {member!r}")
            if not members:
                raise ValueError(f"catalog tier {tier!r} is empty")
            if any(self.canonical(m) in self.embedding_models for m in members):
                raise ValueError(f"catalog tier {tier!r} mixes in an embedding model")

    def canonical(self, name: str) -> str | None:
        """The model id behind a model id or alias, or None."""
        if name in self.models:
            return name
        return self.aliases.get(name)

    def get(self, name: str) -> ModelInfo:
        """The model behind an id or alias; raises ``UnknownModel``."""
        model = self.canonical(name)
        if model is None:
            raise UnknownModel(name)
        return self.models[model]

    def resolve(self, name: str) -> list[tuple[str, str]]:
        """``(provider, model)`` candidates for a name, in order of preference.

        A name is ``provider/model`` (that provider only), a tier (its models in order,
        each with every provider that serves its vendor), or a model id or alias (every
        provider that serves its vendor: OpenAI's models also from Azure).
        """
        provider, slash, rest = name.partition("/")
        if slash:
            model = self.canonical(rest)
            if model is None:
                raise UnknownModel(rest)
            # A provider, or one of its deployments (provider:account).
            if provider.partition(":")[0] not in SERVED_BY[self.models[model].provider]:
                raise UnknownModel(name)
            return [(provider, model)]
        if name in self.tiers:
            members = [self.canonical(m) for m in self.tiers[name]]
            return [(p, m) for m in members if m for p in SERVED_BY[self.models[m].provider]]
        model = self.canonical(name)
        if model is None:
            raise UnknownModel(name)
        return [(p, model) for p in SERVED_BY[self.models[model].provider]]

    def features(self, model: str) -> frozenset[str]:
        """What ``model`` can be asked beyond text and sampling (none for a model the
        catalog does not know: it is not guessed)."""
        name = self.canonical(model)
        return self._features.get(name, frozenset()) if name else frozenset()

    def cost(self, model: str, usage: Usage) -> float:
        """USD for ``usage`` on ``model``; 0 for a model the catalog does not know."""
        name = self.canonical(model)
        if name is None:
            return 0.0
        return self.models[name].cost(usage.input_tokens, usage.output_tokens)

    def output_tokens(self, model: str, requested: int | None, default: int) -> int:
        """The ``max_tokens`` of a call of ``model``: the requested, else the model's own
        default, else ``default``; the model's maximum output at most (a request for
        more is left out by the planner, not cut)."""
        name = self.canonical(model)
        if name is None:
            return requested or default
        info = self.models[name]
        if requested is not None:
            return requested
        return min(info.default_max_tokens or default, info.max_output_tokens)

    def worst_case_cost(self, model: str, input_tokens: int, max_tokens: int | None) -> float:
        """The most a call could cost: all of its input, and output up to its cap."""
        info = self.get(model)
        output = min(max_tokens or info.max_output_tokens, info.max_output_tokens)
        return info.cost(input_tokens, output)


def _check_features(where: str, names: list[str]) -> None:
    unknown = sorted(set(names) - set(FEATURES))
    if unknown:
        known = ", ".join(FEATURES)
        raise ValueError(f"{where}: unknown feature(s) {', '.join(unknown)} (known: {known})")
