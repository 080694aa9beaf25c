"""The configuration: one TOML file decoded into msgspec Structs, once, at start.

Unknown keys and values of the wrong type or range stop the program with a message
that names the field (``ConfigError``). Environment variables override the file
where the README says so: ``REDIS_URL``, ``AIO_ADMIN_TOKEN`` and the provider
variables (``actors.providers.ENV``).
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bus import BusConfig, cluster_seeds, is_cluster_url

from ..providers import CatalogData, ProvidersConfig, Secret, apply_env, decode_hook
from ._routing_config import BreakerConfig, Positive, RouterConfig

__all__ = [
    "LIMIT_FIELDS",
    "MAX_COUNT",
    "MAX_USD",
    "QUOTA_FIELDS",
    "AdmissionConfig",
    "BreakerConfig",
    "Config",
    "ConfigError",
    "GatewayConfig",
    "LimitChanges",
    "LimitsConfig",
    "QuotaChanges",
    "QuotaConfig",
    "RouterConfig",
    "check_limits",
    "load_config",
]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


# Limits: a count (requests, tokens) is a whole number (5 or 5.0: JSON does not tell
# them apart, nor does JSON Schema's "integer"), an amount is US dollars; None means
# unlimited (in TOML, the string "unlimited"). The maxima keep every limit exact where
# the stores keep it, in Lua's doubles (whole numbers up to 2**53, about 9.007e15):
# counts as they are, dollars as integer nano-dollars (9e6 dollars: 9e15).
MAX_COUNT = 10**12
MAX_USD = 9_000_000
Count = Annotated[float, msgspec.Meta(ge=0, le=MAX_COUNT, multiple_of=1)]
Usd = Annotated[float, msgspec.Meta(ge=0, le=MAX_USD)]
WindowMs = Annotated[float, msgspec.Meta(gt=0, le=3_600_000, multiple_of=1)]

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


class QuotaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Default quotas (per user; overridable per user) and how periods run."""

    monthly_request_limit: Count | None = 1_000
    monthly_token_limit: Count | None = 1_000_000
    monthly_cost_limit: Usd | None = 100.0
    daily_request_limit: Count | None = 100
    daily_token_limit: Count | None = 100_000
    daily_cost_limit: Usd | None = 10.0
    per_session_request_limit: Count | None = 50
    per_session_token_limit: Count | None = 50_000
    per_session_cost_limit: Usd | None = 5.0
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

    requests_per_minute: Count | None = 20
    requests_per_hour: Count | None = 1_000
    tokens_per_minute: Count | None = 100_000
    tokens_per_hour: Count | None = 1_000_000
    cost_per_minute: Usd | None = 1.0
    cost_per_hour: Usd | None = 50.0
    # More than burst_limit requests within burst_window_ms is a burst, refused.
    burst_limit: Count | None = 5
    burst_window_ms: WindowMs | None = 10_000
    # A reservation whose request never completes is forgotten after this long.
    reservation_ttl_ms: Positive = 900_000
    concurrency: Positive = 512


def _changes(name: str, config: type[msgspec.Struct], fields: tuple[str, ...]) -> Any:
    """A partial set of ``fields`` with the config's own types; UNSET: left as it is."""
    types = {field.name: field.type for field in msgspec.structs.fields(config)}
    return msgspec.defstruct(
        name,
        [(field, types[field] | msgspec.UnsetType, msgspec.UNSET) for field in fields],
        kw_only=True,
        frozen=True,
        forbid_unknown_fields=True,
        module=__name__,
    )


# The bodies of the admin API's PUT .../config: only the fields named change.
QuotaChanges = _changes("QuotaChanges", QuotaConfig, QUOTA_FIELDS)
LimitChanges = _changes("LimitChanges", LimitsConfig, LIMIT_FIELDS)
_CHANGES = {QUOTA_FIELDS: QuotaChanges, LIMIT_FIELDS: LimitChanges}


def check_limits(changes: object, fields: tuple[str, ...]) -> dict[str, float | None]:
    """Some of the limits ``fields`` (``QUOTA_FIELDS`` or ``LIMIT_FIELDS``), checked with
    the config's types: known names, whole counts, amounts within ``MAX_USD``, None for
    unlimited. ``ValueError`` (msgspec's) names the first field that is wrong."""
    checked = msgspec.convert(changes, _CHANGES[fields])
    return {
        name: value for name in fields if (value := getattr(checked, name)) is not msgspec.UNSET
    }


class AdmissionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the router admits requests through the limiter and the quota keeper."""

    # When they cannot answer in time (Redis down, actors gone): refuse the request
    # (fail_closed) or let it through uncharged (fail_open).
    policy: Literal["fail_closed", "fail_open"] = "fail_closed"
    timeout_ms: Positive = 500
    # A cache hit counts as a request (with no tokens and no cost) when true.
    count_cache_hits: bool = True
    # A request refused only by a rate limit (never a quota) waits for room within its
    # deadline instead of a 429, when it asks to (wait_on_limit, X-Wait-On-Limit), its
    # tier says so, or this says so for everyone.
    wait_on_limit: bool = False


Seconds = Annotated[float, msgspec.Meta(gt=0, le=31_536_000)]  # up to a year


Share = Annotated[float, msgspec.Meta(ge=0, le=1)]


class SemanticConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The semantic level: a question close enough to a cached one gets its answer."""

    enabled: bool = False
    # "openai": OpenAI's embeddings API through its SDK, with the openai provider's key
    # and base URL; "local": WordLlama in this process (the local-embeddings extra; its
    # weights ship in the wheel, 256 dimensions).
    embedder: Literal["openai", "local"] = "openai"
    model: str = "text-embedding-3-small"
    dimensions: Annotated[int, msgspec.Meta(ge=8, le=4096)] = 256
    # The least cosine similarity of a hit. A request may ask for more, or for less
    # down to min_threshold (cache_threshold, X-Cache-Threshold).
    threshold: Share = 0.9
    min_threshold: Share = 0.8
    # Neighbours looked at per lookup (the best one that passes every guard wins).
    candidates: Annotated[int, msgspec.Meta(ge=1, le=256)] = 16
    # The embedding is in the admission round trip: it must take less than
    # admission.timeout_ms (checked at start); slower is a miss.
    timeout_ms: Positive = 300
    # A last message longer than this is cached exactly only (not embedded).
    max_chars: Positive = 2_000


class CacheConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The cache actor: exact answers in memory (L1) and Redis (L2), coalescing."""

    # Run the cache actor. Off: nothing is looked up or stored.
    enabled: bool = True
    # Whether a request that says nothing (no use_cache, no X-Cache header) uses it.
    default: bool = True
    # "user": an answer is served only to the user who got it (and entries warmed as
    # shared to everyone); "shared": to every user.
    scope: Literal["user", "shared"] = "user"
    ttl_s: Seconds = 3_600.0
    # TTL per model (as the key names it: a model id, "provider/model" or a tier).
    model_ttl_s: dict[str, Seconds] = {}
    # Requests with a higher temperature are not cached (their answers are meant to
    # vary); a request without a temperature is cached.
    max_temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 1.0
    # This process's memory (L1): at most this many entries and bytes of answers.
    l1_max_entries: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 10_000
    l1_max_bytes: Annotated[int, msgspec.Meta(ge=0, le=1 << 40)] = 64 * 1024 * 1024
    # Identical requests in flight at once call the provider once; the others wait.
    coalesce: bool = True
    # Answers larger than this are not stored.
    max_entry_bytes: Positive = 1024 * 1024
    concurrency: Positive = 512
    semantic: SemanticConfig = SemanticConfig()


class HealthConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The health prober: probes every enabled provider on a schedule, one process per
    provider at a time (a lease in Redis), and judges it with the real traffic."""

    enabled: bool = True
    interval_ms: Positive = 30_000
    jitter_ms: Annotated[int, msgspec.Meta(ge=0)] = 3_000  # plus 0..jitter between rounds
    timeout_ms: Positive = 5_000  # a probe slower than this failed
    # A probe lists the provider's models (no tokens spent); true: a one-token
    # completion of its default model instead (a few tokens, billed).
    completion_probe: bool = False
    down_after: Positive = 2  # failed probes in a row that make a provider down
    slow_ms: Positive = 2_000  # a probe slower than this: degraded
    traffic_window_s: Positive = 60  # the real calls looked at
    min_calls: Positive = 5  # fewer real calls than this say nothing
    degraded_error_rate: Share = 0.25  # of real calls failed: degraded
    concurrency: Positive = 16


class KeyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who a client key is: its user, and the tier whose limits apply to that user."""

    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    tier: str = ""


class TierConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tier's limits and quotas, over the defaults (a user's own overrides win)."""

    limits: LimitChanges = msgspec.field(default_factory=LimitChanges)  # type: ignore[valid-type]
    quota: QuotaChanges = msgspec.field(default_factory=QuotaChanges)  # type: ignore[valid-type]
    # Its users' requests wait for a rate limit's room instead of a 429 (None: as
    # admission.wait_on_limit says).
    wait_on_limit: bool | None = None


class AuthConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Client keys: who calls the generate and /v1 endpoints."""

    # The SHA-256 (hex) of each client key, and who it is
    # (`echo -n KEY | python run.py key-hash`).
    keys: dict[str, KeyConfig] = {}
    # Keys needed on the generate and /v1 endpoints; true whenever `keys` has one.
    # Keys are looked at only then: keys made over the admin API work once keys are
    # required (this, or a key configured).
    require_keys: bool = False
    # A request with no key and no user id: counted as the one shared user
    # "anonymous" ("shared"), or refused ("refuse": say who you are).
    anonymous: Literal["shared", "refuse"] = "shared"
    tiers: dict[str, TierConfig] = {}

    @property
    def required(self) -> bool:
        return self.require_keys or bool(self.keys)


class TracingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """OpenTelemetry traces (off unless enabled or OTEL_EXPORTER_OTLP_ENDPOINT is set)."""

    enabled: bool = False
    endpoint: str = ""  # the OTLP/HTTP collector (empty: OTEL_EXPORTER_OTLP_ENDPOINT)
    service_name: str = "ai-orchestration"


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The HTTP gateway."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    max_body_bytes: Positive = 8 * 1024 * 1024
    # The bearer token of the management endpoints (AIO_ADMIN_TOKEN). Empty: they refuse
    # everyone, and `run.py serve` makes one at start.
    admin_token: Secret = Secret("")
    # Let other processes of this user listen on the same port (SO_REUSEPORT; the
    # kernel spreads connections over them): what `run.py serve --workers N` sets.
    reuse_port: bool = False


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
    cache: CacheConfig = CacheConfig()
    health: HealthConfig = HealthConfig()
    auth: AuthConfig = AuthConfig()
    tracing: TracingConfig = TracingConfig()
    # Added to the shipped model catalog, or replacing its entries by name.
    catalog: CatalogData = CatalogData()

    def __post_init__(self) -> None:
        if is_cluster_url(self.redis_url):
            try:
                cluster_seeds(self.redis_url)
            except ValueError as exc:  # its message names no credential
                raise ValueError(f"redis_url: {exc}") from None
        for key, who in self.auth.keys.items():
            if not re.fullmatch(r"[0-9a-fA-F]{64}", key):  # not the key itself, ever
                raise ValueError(f"auth.keys: {key[:6]}... is not a SHA-256 (64 hex digits); "
                                 "name each key by its hash: python run.py key-hash")  # fmt: skip
            if who.tier and who.tier not in self.auth.tiers:
                raise ValueError(f"auth.keys.{key[:12]}...: tier {who.tier!r} is not in auth.tiers")
        semantic = self.cache.semantic
        if semantic.enabled and semantic.timeout_ms >= self.admission.timeout_ms:
            raise ValueError(
                f"cache.semantic.timeout_ms ({semantic.timeout_ms}) must be below "
                f"admission.timeout_ms ({self.admission.timeout_ms}): the embedding is "
                "made in the admission round trip"
            )


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
    if env.get("AIO_ADMIN_TOKEN") and isinstance(raw.setdefault("gateway", {}), dict):
        raw["gateway"]["admin_token"] = env["AIO_ADMIN_TOKEN"]
    # TOML has no null: "unlimited" stands for it (the defaults', and each tier's).
    tables = [raw.get("quota"), raw.get("limits")]
    tiers = raw.get("auth", {}).get("tiers", {}) if isinstance(raw.get("auth"), dict) else {}
    for tier in tiers.values() if isinstance(tiers, dict) else ():
        if isinstance(tier, dict):
            tables += [tier.get("quota"), tier.get("limits")]
    for table in tables:
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
