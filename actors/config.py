"""The configuration: one TOML file decoded into msgspec Structs, once, at start.

Unknown keys and values of the wrong type or range stop the program with a message
that names the field (``ConfigError``). Environment variables override the file
where the README says so: ``REDIS_URL`` and the provider variables
(``actors.providers._config.ENV``).
"""

from __future__ import annotations

import math
import os
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bus import BusConfig

from .providers import CatalogData, ProvidersConfig
from .providers._config import apply_env, decode_hook

__all__ = [
    "LIMIT_FIELDS",
    "QUOTA_FIELDS",
    "AdmissionConfig",
    "BreakerConfig",
    "Config",
    "ConfigError",
    "GatewayConfig",
    "LimitsConfig",
    "QuotaConfig",
    "RouterConfig",
    "check_limits",
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
    # While other candidates remain, one attempt gets at most this share of what is
    # left of the request's deadline (and never more than its provider's timeout_ms):
    # a provider that hangs leaves time for the next one. 1: no share.
    attempt_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    # Retries on one provider back off from base to max, with jitter, and never
    # for less than the provider's Retry-After.
    retry_base_ms: Positive = 100
    retry_max_ms: Positive = 2_000
    # Requests one router process handles at once.
    concurrency: Positive = 512
    # Output tokens assumed by the cost strategy when a request sets no max_tokens.
    expected_output_tokens: Positive = 512
    # The largest request taken (a 400 beyond): what one request may cost the process.
    max_messages: Positive = 10_000
    max_prompt_chars: Positive = 4_000_000


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


# A limit: a number of requests, tokens or US dollars, or None for unlimited (in TOML,
# the string "unlimited").
Limit = Annotated[float, msgspec.Meta(ge=0)] | None

QUOTA_FIELDS = (
    "monthly_request_limit",
    "monthly_token_limit",
    "monthly_cost_limit",
    "daily_request_limit",
    "daily_token_limit",
    "daily_cost_limit",
    "per_session_request_limit",
    "per_session_token_limit",
    "per_session_cost_limit",
)
LIMIT_FIELDS = (
    "requests_per_minute",
    "requests_per_hour",
    "tokens_per_minute",
    "tokens_per_hour",
    "cost_per_minute",
    "cost_per_hour",
    "burst_limit",
    "burst_window_ms",
)


def check_limits(changes: object, fields: tuple[str, ...]) -> dict[str, float | None]:
    """A partial set of limits, checked: known names, each a number >= 0 or None
    (unlimited). ``ValueError`` names the first field that is wrong."""
    if not isinstance(changes, dict):
        raise ValueError("limits: send an object of field names to numbers or null")
    out: dict[str, float | None] = {}
    for name, value in changes.items():
        if name not in fields:
            raise ValueError(f"{name}: not a known limit (known: {', '.join(fields)})")
        if value is None:
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}: must be a number or null (unlimited), not {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: must be a finite number >= 0 or null, not {value!r}")
        if name == "burst_window_ms" and not 0 < value <= 3_600_000:
            raise ValueError(f"{name}: must be more than 0 and at most 3600000 ms")
        out[name] = float(value)
    return out


class QuotaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Default quotas (per user; overridable per user) and how periods run."""

    monthly_request_limit: Limit = 1_000
    monthly_token_limit: Limit = 1_000_000
    monthly_cost_limit: Limit = 100.0
    daily_request_limit: Limit = 100
    daily_token_limit: Limit = 100_000
    daily_cost_limit: Limit = 10.0
    per_session_request_limit: Limit = 50
    per_session_token_limit: Limit = 50_000
    per_session_cost_limit: Limit = 5.0
    # Months and days begin at midnight in this time zone.
    timezone: str = "UTC"
    # A quota.warning goes out, once a period, when usage crosses this share.
    warning_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.8
    # A session's usage is forgotten this long after its last request.
    session_ttl_ms: Positive = 86_400_000
    # A reservation whose request never completes is released after this long.
    reservation_ttl_ms: Positive = 900_000
    concurrency: Positive = 512

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"quota.timezone: unknown time zone {self.timezone!r}") from None


class LimitsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Default rate limits (per user; overridable per user), over sliding windows."""

    requests_per_minute: Limit = 20
    requests_per_hour: Limit = 1_000
    tokens_per_minute: Limit = 100_000
    tokens_per_hour: Limit = 1_000_000
    cost_per_minute: Limit = 1.0
    cost_per_hour: Limit = 50.0
    # More than burst_limit requests within burst_window_ms is a burst, refused.
    burst_limit: Limit = 5
    burst_window_ms: Annotated[float, msgspec.Meta(gt=0, le=3_600_000)] | None = 10_000
    # A reservation whose request never completes is forgotten after this long.
    reservation_ttl_ms: Positive = 900_000
    concurrency: Positive = 512


class AdmissionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the router admits requests through the limiter and the quota keeper."""

    # When they cannot answer in time (Redis down, actors gone): refuse the request
    # (fail_closed) or let it through uncharged (fail_open).
    policy: Literal["fail_closed", "fail_open"] = "fail_closed"
    timeout_ms: Positive = 500
    # Output tokens reserved for a request that sets no max_tokens.
    default_max_tokens: Positive = 1_024
    # A cache hit counts as a request (with no tokens and no cost) when true.
    count_cache_hits: bool = True


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
    # The level of the libraries' loggers (provider SDKs, httpx, httpcore, aiohttp, redis).
    sdk_log_level: Literal["debug", "info", "warning", "error"] = "warning"
    bus: BusConfig = BusConfig()
    providers: ProvidersConfig = ProvidersConfig()
    router: RouterConfig = RouterConfig()
    breaker: BreakerConfig = BreakerConfig()
    gateway: GatewayConfig = GatewayConfig()
    quota: QuotaConfig = QuotaConfig()
    limits: LimitsConfig = LimitsConfig()
    admission: AdmissionConfig = AdmissionConfig()
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
    for section in ("quota", "limits"):  # TOML has no null: "unlimited" stands for it
        table = raw.get(section)
        if isinstance(table, dict):
            for name, value in table.items():
                if value == "unlimited":
                    table[name] = None
    try:
        apply_env(raw, env)
    except ValueError as exc:
        raise ConfigError(f"invalid environment: {exc}") from None
    try:
        return msgspec.convert(raw, Config, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config: {exc}") from None
