"""Every message of the system, in one tagged union, with its one codec.

On the wire a stream entry is ``{"type": <tag>, "data": <JSON>}`` (see ``bus``);
``python run.py schema`` prints the JSON Schema of all of them. Rules: frozen,
keyword-only Structs; new fields get defaults; a field's type never changes; a new
meaning gets a new tag.
"""

from __future__ import annotations

from bus import Codec, Failure, Message

__all__ = ["CODEC", "MESSAGE_TYPES", "Failure", "Ping", "Pong"]


class Ping(Message, tag="ping", frozen=True, kw_only=True):
    """Asks an echo actor to answer: proves the bus path, end to end."""

    payload: str = ""


class Pong(Message, tag="pong", frozen=True, kw_only=True):
    """The echo actor's answer to ``Ping``."""

    payload: str = ""
    node: str = ""


MESSAGE_TYPES: tuple[type[Message], ...] = (Failure, Ping, Pong)

CODEC = Codec(MESSAGE_TYPES)
