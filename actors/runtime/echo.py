"""The echo actor: answers ``Ping`` with ``Pong``."""

from __future__ import annotations

from typing import ClassVar

from bus import Bus, Delivery, Message, Rejected

from ..messages import Ping, Pong
from ._actor import Actor

__all__ = ["EchoActor"]


class EchoActor(Actor):
    """Answers every ``Ping`` on ``{ns}:echo``; a liveness check of the whole bus path."""

    group: ClassVar[str] = "echo"

    def __init__(self, bus: Bus, *, concurrency: int = 16) -> None:
        super().__init__(bus, stream=bus.names.echo, concurrency=concurrency)

    async def handle(self, message: Message, delivery: Delivery) -> Message | None:
        match message:
            case Ping(payload=payload):
                return Pong(payload=payload, node=self.bus.node)
            case _:
                raise Rejected(
                    f"echo does not take {type(message).__name__} (on {delivery.stream})"
                )
