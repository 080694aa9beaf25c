"""The actors of the orchestration layer and the runtime they share."""

from ._actor import Actor
from ._logging import configure_logging
from ._supervisor import Supervisor
from .echo import EchoActor
from .messages import CODEC, MESSAGE_TYPES, Ping, Pong

__all__ = [
    "CODEC",
    "MESSAGE_TYPES",
    "Actor",
    "EchoActor",
    "Ping",
    "Pong",
    "Supervisor",
    "configure_logging",
]
