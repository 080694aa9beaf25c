"""Client keys over the bus: the keyring's commands and answers. A key itself never
crosses the bus: it is made by the asker, who sends its SHA-256."""

from __future__ import annotations

from typing import Literal

import msgspec

from bus import Message

from ._request import UserId


class KeyEntry(msgspec.Struct, frozen=True, kw_only=True):
    """Who a client key is (never the key): its id (the start of its hash)."""

    id: str
    user_id: str
    tier: str = ""
    created_ms: int = 0


class KeysCommand(Message, tag="keys.command", frozen=True, kw_only=True):
    """To the keyring (``{ns}:keys``): keep a new key of a user (``add``, with its SHA-256,
    hex), ``revoke`` one by id, ``list`` them, or ``lookup`` one by its SHA-256. The
    reply is a ``keys.report``, or an ``admin.refused``."""

    action: Literal["add", "revoke", "list", "lookup"]
    user_id: UserId | None = None
    tier: str = ""
    id: str = ""
    sha256: str = ""


class KeysReport(Message, tag="keys.report", frozen=True, kw_only=True):
    """The keys (``list``), the one found (``lookup``; none: unknown), the one kept
    (``add``), or how many were revoked. ``key`` is never sent: ``Admin.keys`` fills
    it in for its caller after an ``add``."""

    keys: list[KeyEntry] = msgspec.field(default_factory=list)
    key: str = ""
    revoked: int = 0
