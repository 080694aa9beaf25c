"""Who calls the generate and /v1 endpoints: the user of a client key, or (when keys
are not required) the user the body names, by the rule ``auth.anonymous`` sets."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from aiohttp import web

from bus import BusError

from ..admin import Admin
from ..runtime.config import AuthConfig

__all__ = ["Callers", "Refused"]

# A key looked up over the bus is remembered this long (a revoked key stops working
# within it), and at most this many of them.
_REMEMBER_S = 5.0
_REMEMBERED = 10_000
_NEED = "send a client key: `Authorization: Bearer <key>` or `X-API-Key: <key>`"


class Refused(Exception):
    """The caller may not make this request: status, error type, message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class Callers:
    def __init__(self, config: AuthConfig, admin: Admin) -> None:
        self.config = config
        self.admin = admin
        self._configured = {d.lower(): (k.user_id, k.tier) for d, k in config.keys.items()}
        # The keys looked up lately, least recent first (an unknown one too: a flood of
        # random keys costs one lookup each, and pushes out only the oldest).
        self._remembered: OrderedDict[str, tuple[float, tuple[str, str] | None]] = OrderedDict()

    async def who(self, request: web.Request, named: str | None) -> tuple[str, str]:
        """``(user_id, tier)`` of the request; ``Refused`` when it may not be made.

        With keys required, the key says who: a body that names another user is refused
        (a key cannot act as another user). Without, the body's user, or for a request
        naming none the shared ``anonymous`` (or a refusal, ``auth.anonymous =
        "refuse"``).
        """
        if not self.config.required:
            if named is None and self.config.anonymous == "refuse":
                raise Refused(400, "invalid_request",
                              "user_id: say who you are (this gateway has no shared "
                              "anonymous user)")  # fmt: skip
            return named or "anonymous", ""
        key = _presented(request)
        if not key:
            raise Refused(401, "unauthorized", f"this gateway needs a client key: {_NEED}")
        who = await self._lookup(hashlib.sha256(key.encode()).hexdigest())
        if who is None:
            raise Refused(
                401, "unauthorized", f"the client key is not known or was revoked; {_NEED}"
            )
        if named not in (None, "anonymous", who[0]):
            why = f"user_id: this key is another user's; it cannot act as {named!r}"
            raise Refused(403, "forbidden", why)
        return who

    async def end_user(self, request: web.Request, named: str | None) -> tuple[str, str]:
        """``who``, with a provider API's own end-user id (OpenAI's ``user``, Anthropic's
        ``metadata.user_id``) as the user only when no key is required: with a key, that
        id is the key's user's business, not who is calling."""
        return await self.who(request, None if self.config.required else named)

    async def _lookup(self, digest: str) -> tuple[str, str] | None:
        if digest in self._configured:
            return self._configured[digest]
        now = time.monotonic()
        remembered = self._remembered.get(digest)
        if remembered is not None and remembered[0] > now:
            self._remembered.move_to_end(digest)
            return remembered[1]
        try:
            report = await self.admin.keys("lookup", sha256=digest)
        except BusError as exc:
            raise Refused(503, "unavailable", f"client keys could not be checked: {exc}") from None
        who = (report.keys[0].user_id, report.keys[0].tier) if report.keys else None
        self._remembered[digest] = (now + _REMEMBER_S, who)
        self._remembered.move_to_end(digest)
        while len(self._remembered) > _REMEMBERED:
            self._remembered.popitem(last=False)
        return who

    async def tier_of(self, user_id: str) -> str:
        """The tier of a user: its configured key's, else its newest stored key's, else
        none (the defaults). ``BusError`` when the keyring cannot be asked."""
        return (await self.tiers_of([user_id]))[user_id]

    async def tiers_of(self, user_ids: list[str]) -> dict[str, str]:
        """``tier_of`` for several users, with one look at the keyring for them all."""
        found = dict.fromkeys(user_ids, "")
        configured: dict[str, str] = {}
        for user, tier in self._configured.values():
            configured.setdefault(user, tier)  # a user's first configured key says
        if self.config.tiers and not set(found) <= set(configured):
            listed = await self.admin.keys("list")
            for key in sorted(listed.keys, key=lambda k: k.created_ms):  # the newest last
                if key.user_id in found:
                    found[key.user_id] = key.tier
        for user in found:
            if user in configured:
                found[user] = configured[user]
        return found


def _presented(request: web.Request) -> str:
    given = request.headers.get("X-API-Key", "").strip()
    if given:
        return given
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
