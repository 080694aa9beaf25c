"""The configuration: one TOML file decoded into msgspec Structs, once, at start.

Unknown keys and values of the wrong type or range stop the program with a message
that names the field (``ConfigError``). Environment variables override the file
where the README says so: ``REDIS_URL`` and the provider variables
(``actors.providers._config.ENV``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from bus import BusConfig

from .providers import CatalogData, ProvidersConfig
from .providers._config import apply_env, decode_hook

__all__ = ["Config", "ConfigError", "load_config"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration."""

    # Redis to use; empty means: start an embedded server (see --data-dir).
    redis_url: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    bus: BusConfig = BusConfig()
    providers: ProvidersConfig = ProvidersConfig()
    # Added to the shipped model catalog, or replacing its entries by name.
    catalog: CatalogData = CatalogData()


def load_config(
    path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None
) -> Config:
    """Read ``path`` (TOML; none means defaults), then apply environment overrides."""
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if env.get("REDIS_URL"):
        raw["redis_url"] = env["REDIS_URL"]
    try:
        apply_env(raw, env)
    except ValueError as exc:
        raise ConfigError(f"invalid environment: {exc}") from None
    try:
        return msgspec.convert(raw, Config, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config: {exc}") from None
