"""The keyring actor: client keys added and revoked at run time, kept hashed in Redis."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, ClassVar

import msgspec

from bus import Bus, Deferred, Delivery, Message, Rejected

from ..messages import AdminRefused, KeyEntry, KeysCommand, KeysReport, keys_stream
from ..runtime import Actor
from ..runtime.config import AuthConfig

__all__ = ["Keyring", "key_hash", "new_key"]

_decode = msgspec.json.Decoder(KeyEntry).decode


def new_key() -> str:
    """A new client key (what ``Admin.keys("add")`` makes, and shows once)."""
    return "aio-" + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """The SHA-256 (hex) of a client key: how config and Redis name it."""
    return hashlib.sha256(key.encode()).hexdigest()


class Keyring(Actor):
    """Answers ``keys.command`` on ``{ns}:keys``. Keys live in ``{ns}:auth:keys`` (a hash:
    SHA-256 -> who), so no key can be read back; a key never crosses the bus: whoever
    makes one (``Admin.keys("add")``) sends only its SHA-256."""

    group: ClassVar[str] = "keys"

    def __init__(self, bus: Bus, config: AuthConfig, *, concurrency: int = 64) -> None:
        super().__init__(bus, stream=keys_stream(bus.names), concurrency=concurrency)
        self.config = config
        self.hash = f"{bus.names.ns}:auth:keys"

    async def handle(self, message: Message, delivery: Delivery) -> Message | Deferred | None:
        if not isinstance(message, KeysCommand):
            raise Rejected(f"keys does not take {type(message).__name__}")
        redis = self.bus.redis
        if message.action == "lookup":
            raw = await redis.hget(self.hash, message.sha256)
            return KeysReport(keys=[_decode(raw)] if raw else [])
        if message.action == "add":
            if not message.user_id:
                return AdminRefused(message="user_id: a new key needs the user it is for")
            if len(message.sha256) != 64:
                return AdminRefused(message="sha256: the new key's SHA-256, 64 hex digits")
            if message.tier and message.tier not in self.config.tiers:
                known = ", ".join(sorted(self.config.tiers)) or "none configured"
                return AdminRefused(message=f"tier: {message.tier!r} is not a tier ({known})")
            digest = message.sha256.lower()
            entry = KeyEntry(id=digest[:12], user_id=message.user_id, tier=message.tier,
                             created_ms=self.bus.now_ms())  # fmt: skip
            await redis.hset(self.hash, digest, msgspec.json.encode(entry))
            return KeysReport(keys=[entry])
        entries = await self._entries()
        if message.action == "revoke":
            doomed = [digest for digest, entry in entries if entry.id == message.id]
            if doomed:
                await redis.hdel(self.hash, *doomed)
            return KeysReport(revoked=len(doomed))
        return KeysReport(keys=sorted((e for _d, e in entries), key=lambda e: e.created_ms))

    async def _entries(self) -> list[tuple[str, KeyEntry]]:
        found: list[tuple[str, KeyEntry]] = []
        raw: Any
        async for digest, raw in self.bus.redis.hscan_iter(self.hash, count=500):
            found.append((bytes(digest).decode(), _decode(raw)))
        return found
