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
from typing import Annotated, Any, Literal

import msgspec

from bus import BusConfig

from .providers import CatalogData, ProvidersConfig
from .providers._config import apply_env, decode_hook

__all__ = [
    "BreakerConfig",
    "Config",
    "ConfigError",
    "GatewayConfig",
    "RouterConfig",
    "load_config",
]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(gt=0, le=100)]


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the router picks providers and retries (times in milliseconds)."""

    strategy: Literal["performance", "cost", "round_robin", "weighted"] = "performance"
    # Weights of the weighted strategy, by provider; a provider not named weighs 1.
    weights: dict[str, Annotated[float, msgspec.Meta(ge=0)]] = {}
    request_timeout_ms: Positive = 60_000
    # Retries on one provider back off from base to max, with jitter, and never
    # for less than the provider's Retry-After.
    retry_base_ms: Positive = 100
    retry_max_ms: Positive = 2_000
    # Requests one router process handles at once.
    concurrency: Positive = 512
    # Output tokens assumed by the cost strategy when a request sets no max_tokens.
    expected_output_tokens: Positive = 512


class BreakerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Circuit breakers, one per provider, in the manner of resilience4j."""

    window_type: Literal["count", "time"] = "count"
    # Calls (count) or seconds (time) the failure and slow-call rates are judged over.
    window_size: Positive = 20
    # No judgement before this many calls in the window.
    minimum_calls: Positive = 10
    failure_rate_threshold: Percent = 50
    slow_call_ms: Positive = 30_000
    slow_call_rate_threshold: Percent = 100
    open_ms: Positive = 30_000
    half_open_calls: Positive = 3
    # A half-open breaker whose trials have not all reported after this long counts
    # the missing ones as failures (a hung trial); 0: wait forever.
    half_open_max_wait_ms: NonNegative = 60_000
    # Calls one breaker process makes at once to its provider.
    concurrency: Positive = 512
    # How often each process re-reads every breaker's state from Redis (events bring
    # changes at once; this bounds how stale a missed event leaves a view).
    refresh_ms: Positive = 500


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The HTTP gateway."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    max_body_bytes: Positive = 8 * 1024 * 1024


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration."""

    # Redis to use; empty means: start an embedded server (see --data-dir).
    redis_url: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    bus: BusConfig = BusConfig()
    providers: ProvidersConfig = ProvidersConfig()
    router: RouterConfig = RouterConfig()
    breaker: BreakerConfig = BreakerConfig()
    gateway: GatewayConfig = GatewayConfig()
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
