"""What every actor runs on: the actor base and its supervisor, configuration, logging,
counters, and the choice of Redis."""

from ._actor import Actor
from ._logging import Redactor, configure_logging, log_waiting_tasks, secrets_of
from ._metrics import Metrics
from ._redis import redis_for
from ._supervisor import Supervisor
from ._tracing import annotate, configure_tracing, shutdown_tracing, span, tracing_on
from ._workers import Workers, reserve_port
from .config import (
    LIMIT_FIELDS,
    QUOTA_FIELDS,
    AdmissionConfig,
    BreakerConfig,
    CacheConfig,
    Config,
    ConfigError,
    GatewayConfig,
    HealthConfig,
    LimitsConfig,
    QuotaConfig,
    RouterConfig,
    SemanticConfig,
    load_config,
)
from .echo import EchoActor

__all__ = [
    "LIMIT_FIELDS",
    "QUOTA_FIELDS",
    "Actor",
    "AdmissionConfig",
    "BreakerConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "EchoActor",
    "GatewayConfig",
    "HealthConfig",
    "LimitsConfig",
    "Metrics",
    "QuotaConfig",
    "Redactor",
    "RouterConfig",
    "SemanticConfig",
    "Supervisor",
    "Workers",
    "annotate",
    "configure_logging",
    "configure_tracing",
    "load_config",
    "log_waiting_tasks",
    "redis_for",
    "reserve_port",
    "secrets_of",
    "shutdown_tracing",
    "span",
    "tracing_on",
]
