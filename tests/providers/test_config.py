"""Provider settings: the file, the environment, and which providers are enabled."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from actors.providers import Catalog, build_adapters
from actors.providers._config import ENV
from actors.runtime.config import ConfigError, load_config


def test_environment_sets_every_provider() -> None:
    env = {
        "OPENAI_API_KEY": "sk-1",
        "OPENAI_BASE_URL": "http://sim/v1",
        "OPENAI_DEFAULT_MODEL": "gpt-4o",
        "OPENAI_TIMEOUT_MS": "1500",
        "OPENAI_MAX_RETRIES": "3",
        "ANTHROPIC_API_KEY": "sk-ant",
        "GOOGLE_API_KEY": "g",
        "GOOGLE_TIMEOUT_MS": "900",
        "AZURE_OPENAI_API_KEY": "az",
        "AZURE_OPENAI_ENDPOINT": "http://sim",
        "AZURE_OPENAI_DEPLOYMENT": "dep",
    }
    providers = load_config(None, env=env).providers
    assert providers.openai.api_key == "sk-1"
    assert providers.openai.base_url == "http://sim/v1"
    assert providers.openai.timeout_ms == 1500 and providers.openai.max_retries == 3
    assert providers.default_model("openai") == "gpt-4o"
    assert providers.google.timeout_ms == 900
    assert providers.azure.base_url == "http://sim" and providers.azure.deployment == "dep"
    assert all(config.enabled for _name, config in providers.items())


def test_every_variable_read_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for variable in ENV:
        assert f"`{variable}`" in docs, variable


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[providers.openai]\napi_key = "from-file"\ntimeout_ms = 100\n')
    config = load_config(path, env={"OPENAI_API_KEY": "from-env"})
    assert config.providers.openai.api_key == "from-env"
    assert config.providers.openai.timeout_ms == 100


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("[providers.openai]\ntimeout_ms = -1\n", {}, "$.providers.openai.timeout_ms"),
        ("[providers.google]\nmodel = 'x'\n", {}, "unknown field `model`"),
        ("[providers.azure]\ndeployments = 3\n", {}, "$.providers.azure.deployments"),
        ("", {"ANTHROPIC_TIMEOUT_MS": "soon"}, "ANTHROPIC_TIMEOUT_MS must be a whole number"),
        ("[catalog.aliases]\nx = 1\n", {}, "$.catalog.aliases"),
    ],
)
def test_a_bad_value_names_the_field(
    tmp_path: Path, text: str, env: dict[str, str], named: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert named in str(caught.value)


def test_a_key_never_shows_in_a_repr() -> None:
    config = load_config(None, env={"OPENAI_API_KEY": "sk-secret-value"})
    assert "sk-secret-value" not in repr(config)


async def test_providers_without_a_key_are_not_enabled_and_say_so() -> None:
    config = load_config(None, env={"GOOGLE_API_KEY": "g", "AZURE_OPENAI_API_KEY": "az"})
    with capture_logs() as logs:
        adapters = build_adapters(config.providers, Catalog())
    assert list(adapters) == ["google"]
    disabled = {e["provider"]: e["reason"] for e in logs if e["event"] == "provider.disabled"}
    assert disabled["openai"] == "no API key configured"
    assert disabled["azure"] == "no endpoint (AZURE_OPENAI_ENDPOINT) configured"
    assert set(disabled) == {"openai", "azure", "anthropic"}
    assert not any(str(v) == "g" for e in logs for v in e.values())
    for adapter in adapters.values():
        await adapter.close()
