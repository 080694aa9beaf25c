from __future__ import annotations

from pathlib import Path

import pytest

from actors.runtime.config import Config, ConfigError, load_config
from bus import StreamConfig


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    assert load_config(None, env={}) == Config()


def test_a_file_sets_nested_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'log_level = "debug"\n[bus]\nnamespace = "prod"\n'
        "[bus.streams.requests]\nretention_ms = 60000\nmax_len = 5000\n",
    )
    config = load_config(path, env={})
    assert config.log_level == "debug"
    assert config.bus.namespace == "prod"
    assert config.bus.stream("requests") == StreamConfig(retention_ms=60_000, max_len=5_000)
    assert config.bus.stream("events") == StreamConfig()


def test_redis_url_comes_from_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, 'redis_url = "redis://file:6379/0"\n')
    assert load_config(path, env={}).redis_url == "redis://file:6379/0"
    env = {"REDIS_URL": "redis://env:6379/1"}
    assert load_config(path, env=env).redis_url == "redis://env:6379/1"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[bus]\nclaim_idle_ms = 0\n", "$.bus.claim_idle_ms"),
        ("[bus]\nbatch = 'many'\n", "$.bus.batch"),
        ("[bus]\nunknown = 1\n", "unknown field `unknown`"),
        ("colour = 'blue'\n", "unknown field `colour`"),
        ('log_level = "loud"\n', "$.log_level"),
        ("[bus]\nclaim_idle_ms = 100\n", "claim_idle_ms must be at least"),
        ("not toml at all = = =\n", "not valid TOML"),
        ("[limits]\nrequests_per_minute = 0.5\n", "$.limits.requests_per_minute"),
        ("[limits]\ncost_per_minute = 1e308\n", "$.limits.cost_per_minute"),
        ("[limits]\nburst_window_ms = 0\n", "$.limits.burst_window_ms"),
        ("[quota]\ndaily_cost_limit = 1e300\n", "$.quota.daily_cost_limit"),
        ("[quota]\nmonthly_token_limit = 2e12\n", "$.quota.monthly_token_limit"),
    ],
)
def test_a_bad_value_names_the_field(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), env={})
    assert named in str(caught.value)


def test_a_bad_cluster_url_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigError, match="host:port") as caught:
        load_config(env={"REDIS_URL": "redis+cluster://u:hunter2@10.0.0.5:port"})
    assert "hunter2" not in str(caught.value)
    assert load_config(env={"REDIS_URL": "redis+cluster://a:1,b:2"}).redis_url


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_the_shipped_example_config_loads() -> None:
    from pathlib import Path  # noqa: PLC0415

    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    config = load_config(example, env={})
    assert config.cache.enabled and config.health.enabled and not config.tracing.enabled
    assert "house" in config.catalog.aliases
