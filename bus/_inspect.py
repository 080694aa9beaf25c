"""A look at the bus itself: each stream's length, its groups' consumers, pending
entries and lag, and the dead letters. Read-only; a few round trips whatever the
number of streams (one pipeline for the streams, one for their groups' consumers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

__all__ = ["DeadLetter", "GroupInfo", "StreamInfo", "dead_letters", "inspect_streams"]


class GroupInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One consumer group of a stream."""

    group: str
    consumers: int
    pending: int  # delivered and not yet acknowledged
    lag: int | None  # entries not yet delivered to the group (None: Redis cannot tell)
    idle_ms: int | None  # since its busiest consumer last read (None: no consumer)
    last_delivered_id: str


class StreamInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One stream: its length and its groups."""

    stream: str
    length: int
    groups: list[GroupInfo] = []


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """An entry moved to the dead-letter stream, and why."""

    id: str
    stream: str  # where it was read from
    group: str
    reason: str
    type: str  # its message type, as written
    deliveries: int


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    """A count as Redis gave it, or None for what is none (a hand-written field)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def inspect_streams(redis: Any, streams: Sequence[str]) -> list[StreamInfo]:
    """The streams of ``streams`` that exist, in that order."""
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        pipe.exists(stream)
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
    answers = await pipe.execute(raise_on_error=False)
    found: list[tuple[str, int, list[dict[str, Any]]]] = []
    for index, stream in enumerate(streams):
        exists, length, groups = answers[3 * index : 3 * index + 3]
        if exists != 1 or isinstance(length, Exception):  # none, or not a stream
            continue
        found.append((stream, int(length), groups if isinstance(groups, list) else []))
    pipe = redis.pipeline(transaction=False)
    for stream, _length, groups in found:
        for group in groups:
            pipe.xinfo_consumers(stream, _text(group["name"]))
    consumers = iter(await pipe.execute(raise_on_error=False))
    infos = []
    for stream, length, groups in found:
        rows = []
        for group in groups:
            members = next(consumers)
            idles = [int(m["idle"]) for m in members] if isinstance(members, list) else []
            rows.append(
                GroupInfo(
                    group=_text(group["name"]),
                    consumers=_int(group.get("consumers")) or 0,
                    pending=_int(group.get("pending")) or 0,
                    lag=_int(group.get("lag")),
                    idle_ms=min(idles) if idles else None,
                    last_delivered_id=_text(group.get("last-delivered-id", "")),
                )
            )
        infos.append(StreamInfo(stream=stream, length=length, groups=rows))
    return infos


async def dead_letters(redis: Any, stream: str, count: int) -> tuple[int, list[DeadLetter]]:
    """How many entries the dead-letter ``stream`` holds, and the latest ``count``."""
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(stream)
    pipe.xrevrange(stream, count=count)
    total, entries = await pipe.execute()
    latest = []
    for entry_id, fields in entries:
        latest.append(
            DeadLetter(
                id=_text(entry_id),
                stream=_text(fields.get(b"source_stream", b"")),
                group=_text(fields.get(b"source_group", b"")),
                reason=_text(fields.get(b"reason", b"")),
                type=_text(fields.get(b"type", b"")),
                deliveries=_int(fields.get(b"deliveries")) or 0,  # anyone may write here
            )
        )
    return int(total), latest
