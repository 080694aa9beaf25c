from __future__ import annotations

import pytest

from actors.providers import Catalog, CatalogData, ModelInfo, UnknownModel, Usage

DESIGN_NAMES = [
    "gpt-3.5-turbo",
    "gpt-4",
    "gpt-4-turbo",
    "claude-3-haiku",
    "claude-3-sonnet",
    "claude-3-opus",
    "gemini-pro",
    "gemini-1.5-pro",
    "gemini-1.5-flash",
]


def test_the_shipped_catalog_loads_and_knows_the_design_names() -> None:
    catalog = Catalog()
    for name in DESIGN_NAMES:
        info = catalog.get(name)
        assert info.input_per_mtok > 0 and info.output_per_mtok > 0
        assert info.context_window >= info.max_output_tokens or info.context_window >= 8192
    assert {"fast", "balanced", "smart"} <= set(catalog.tiers)
    vendors = {catalog.get(m).provider for m in catalog.tiers["fast"]}
    assert vendors == {"openai", "anthropic", "google"}  # a tier spans providers


def test_every_model_has_a_source() -> None:
    for name, info in Catalog().models.items():
        assert info.source, name


def test_resolve_names_aliases_tiers_and_provider_prefixes() -> None:
    catalog = Catalog()
    assert catalog.resolve("gpt-4o") == [("openai", "gpt-4o"), ("azure", "gpt-4o")]
    assert catalog.resolve("claude-3-haiku") == [("anthropic", "claude-3-haiku-20240307")]
    assert catalog.resolve("azure/gpt-4o") == [("azure", "gpt-4o")]
    fast = catalog.resolve("fast")
    assert next(m for _p, m in fast) == catalog.canonical(catalog.tiers["fast"][0])
    with pytest.raises(UnknownModel, match="nope"):
        catalog.resolve("nope")
    with pytest.raises(UnknownModel):
        catalog.resolve("anthropic/gpt-4o")  # Anthropic does not serve OpenAI's models


def test_cost_uses_the_price_per_million() -> None:
    catalog = Catalog()
    info = catalog.get("gpt-4o")
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, total_tokens=1_500_000)
    assert catalog.cost("gpt-4o", usage) == pytest.approx(
        info.input_per_mtok + info.output_per_mtok / 2
    )
    assert catalog.worst_case_cost("gpt-4o", 1000, 10) == pytest.approx(info.cost(1000, 10))
    assert catalog.worst_case_cost("gpt-4o", 1000, None) == pytest.approx(
        info.cost(1000, info.max_output_tokens)
    )


def test_overrides_add_and_replace() -> None:
    mine = ModelInfo(
        provider="openai",
        context_window=1000,
        max_output_tokens=100,
        input_per_mtok=1,
        output_per_mtok=2,
    )
    catalog = Catalog(
        overrides=CatalogData(models={"house-model": mine}, tiers={"fast": ["house-model"]})
    )
    assert catalog.get("house-model") == mine
    assert catalog.resolve("fast") == [("openai", "house-model"), ("azure", "house-model")]


def test_broken_references_are_refused() -> None:
    with pytest.raises(ValueError, match="alias 'x' names unknown model 'y'"):
        Catalog(overrides=CatalogData(aliases={"x": "y"}))
    with pytest.raises(ValueError, match="tier 'fast' names unknown model 'nope'"):
        Catalog(overrides=CatalogData(tiers={"fast": ["nope"]}))
