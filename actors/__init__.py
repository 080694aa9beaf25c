"""The orchestration layer's actors, and what a program needs to use them.

``Node`` runs the actors of a role on one bus; ``Client`` sends requests over the bus;
``Alerts`` follows the alert stream; ``load_config`` reads the TOML configuration.
"""

from .alerts import Alerts
from .client import (
    AdmissionUnavailable,
    Client,
    DeadlineExceeded,
    GenerateError,
    InvalidRequest,
    LimitError,
    NoProviderAvailable,
    QuotaError,
    RateLimitError,
    StreamInterrupted,
)
from .messages import CODEC, MESSAGE_TYPES, Ping, Pong
from .node import Node, Role
from .runtime import (
    Actor,
    Config,
    ConfigError,
    EchoActor,
    Supervisor,
    configure_logging,
    load_config,
)

__all__ = [
    "CODEC",
    "MESSAGE_TYPES",
    "Actor",
    "AdmissionUnavailable",
    "Alerts",
    "Client",
    "Config",
    "ConfigError",
    "DeadlineExceeded",
    "EchoActor",
    "GenerateError",
    "InvalidRequest",
    "LimitError",
    "NoProviderAvailable",
    "Node",
    "Ping",
    "Pong",
    "QuotaError",
    "RateLimitError",
    "Role",
    "StreamInterrupted",
    "Supervisor",
    "configure_logging",
    "load_config",
]
