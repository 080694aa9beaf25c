"""Typed messages and their wire form.

A stream entry holds the fields ``type`` (the message's tag) and ``data`` (the
message as a JSON object), and, when it takes part in a request/reply exchange or
has a deadline, ``corr`` (correlation id), ``reply_to`` (the stream the reply goes
to) and ``deadline`` (milliseconds since the epoch, on the Redis server's clock).
An ask also carries ``publish_by`` (same clock): when its publisher stops waiting
for the write; an entry that Redis added later than that is dropped unread, so a
publish its publisher reported failed never runs.
``data`` also carries ``type``; a publisher in another language may leave it out.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ._errors import DecodeError

__all__ = ["Codec", "Envelope", "Failure", "Message", "added_ms", "xadd_command"]

TYPE = b"type"
DATA = b"data"
CORR = b"corr"
REPLY_TO = b"reply_to"
DEADLINE = b"deadline"
PUBLISH_BY = b"publish_by"
TRACEPARENT = b"traceparent"

# The W3C trace context of the work in progress (``traceparent``), if a tracer set one:
# every entry published from this context carries it, and a consumer's handler runs
# with the one its entry carried. The bus only carries it.
trace_context: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bus_trace_context", default=None
)


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every message: frozen, keyword-only, tagged by its ``type``.

    Declare one as ``class X(Message, tag="x.y", frozen=True, kw_only=True)``: msgspec
    does not inherit ``kw_only`` (the codec refuses a message with positional fields)
    and type checkers want ``frozen`` restated.
    Schema evolution: add fields with defaults, never change a field's type; a new
    meaning gets a new tag.
    """


class Failure(Message, tag="bus.failure", frozen=True, kw_only=True):
    """The answer to an ask that its consumer could not complete."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded stream entry: the message and the bus's own fields around it."""

    message: Message
    correlation_id: str | None = None
    reply_to: str | None = None
    deadline_ms: int | None = None
    publish_by_ms: int | None = None
    traceparent: str | None = None


def _tag_of(cls: type[Message]) -> str:
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__name__} needs a string tag (class X(Message, tag='x.y'))")
    positional = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind is not inspect.Parameter.KEYWORD_ONLY
    ]
    if positional:
        raise TypeError(f"{cls.__name__} must be declared with kw_only=True ({positional})")
    return tag


class Codec:
    """The one encoder and decoder of a set of message types (``Failure`` included)."""

    def __init__(self, types: Iterable[type[Message]]) -> None:
        classes: list[type[Message]] = [Failure, *(t for t in types if t is not Failure)]
        self._encoder = msgspec.json.Encoder()
        self._tags: dict[type[Message], bytes] = {}
        self._decoders: dict[bytes, msgspec.json.Decoder[Any]] = {}
        for cls in classes:
            tag = _tag_of(cls).encode()
            if tag in self._decoders:
                raise ValueError(f"two message types share the tag {tag.decode()!r}")
            self._tags[cls] = tag
            self._decoders[tag] = msgspec.json.Decoder(cls)
        self.types: tuple[type[Message], ...] = tuple(classes)

    def knows(self, tag: bytes | None) -> bool:
        """Whether ``tag`` is the type of a message of this codec."""
        return tag is not None and tag in self._decoders

    def tag(self, cls: type[Message]) -> str:
        return self._tags[cls].decode()

    def fields(
        self,
        message: Message,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        deadline_ms: int | None = None,
        publish_by_ms: int | None = None,
    ) -> dict[bytes, bytes]:
        """The stream entry for ``message``."""
        try:
            tag = self._tags[type(message)]
        except KeyError:
            raise TypeError(f"{type(message).__name__} is not a message of this codec") from None
        entry = {TYPE: tag, DATA: self._encoder.encode(message)}
        if correlation_id is not None:
            entry[CORR] = correlation_id.encode()
        if reply_to is not None:
            entry[REPLY_TO] = reply_to.encode()
        if deadline_ms is not None:
            entry[DEADLINE] = b"%d" % deadline_ms
        if publish_by_ms is not None:
            entry[PUBLISH_BY] = b"%d" % publish_by_ms
        traced = trace_context.get()
        if traced is not None:
            entry[TRACEPARENT] = traced.encode()
        return entry

    def decode(self, fields: Mapping[bytes, bytes]) -> Envelope:
        """Decode a stream entry; raises ``DecodeError`` naming what is wrong."""
        tag = fields.get(TYPE)
        if tag is None:
            raise DecodeError("entry has no 'type' field")
        decoder = self._decoders.get(tag)
        if decoder is None:
            raise DecodeError(f"unknown message type {tag.decode(errors='replace')!r}")
        data = fields.get(DATA)
        if data is None:
            raise DecodeError("entry has no 'data' field")
        try:
            message = decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise DecodeError(f"bad data for {tag.decode()!r}: {exc}") from None
        corr = fields.get(CORR)
        reply_to = fields.get(REPLY_TO)
        traced = fields.get(TRACEPARENT)
        return Envelope(
            message,
            corr.decode() if corr is not None else None,
            reply_to.decode() if reply_to is not None else None,
            _millis(fields, DEADLINE),
            _millis(fields, PUBLISH_BY),
            traced.decode(errors="replace")[:128] if traced is not None else None,
        )

    def schema(self) -> dict[str, Any]:
        """JSON Schema of the stream entry and of every message's ``data``."""
        schemas, defs = msgspec.json.schema_components(self.types, ref_template="#/$defs/{name}")
        for definition in defs.values():
            required = definition.get("required", [])
            if "type" in required:  # the entry's own `type` field already says it
                required.remove("type")
                if not required:
                    del definition["required"]
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Stream entry",
            "description": __doc__.strip() if __doc__ else "",
            "type": "object",
            "properties": {
                "type": {"enum": [self.tag(t) for t in self.types]},
                "data": {"type": "string", "contentMediaType": "application/json"},
                "corr": {"type": "string"},
                "reply_to": {"type": "string"},
                "deadline": {"type": "string", "pattern": "^[0-9]+$"},
                "publish_by": {"type": "string", "pattern": "^[0-9]+$"},
            },
            "required": ["type", "data"],
            "messages": {self.tag(t): s for t, s in zip(self.types, schemas, strict=True)},
            "$defs": defs,
        }


def added_ms(entry_id: bytes) -> int:
    """When Redis added an entry: its id's first part (Redis time, milliseconds)."""
    return int(entry_id.partition(b"-")[0])


def _millis(fields: Mapping[bytes, bytes], name: bytes) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise DecodeError(f"{name.decode()!r} is not an integer: {value!r}") from None


def xadd_command(stream: str, fields: dict[bytes, bytes], max_len: int) -> list[Any]:
    """``XADD stream MAXLEN ~ max_len * field value ...`` as a command list."""
    command: list[Any] = ["XADD", stream, "MAXLEN", "~", max_len, "*"]
    for item in fields.items():
        command.extend(item)
    return command
