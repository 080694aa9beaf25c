"""The limits' Redis keys: every key of one user shares one Redis Cluster slot.

=============================  ======================================================
key                            what (the Lua scripts' headers say each part's layout)
=============================  ======================================================
``{ns}:limits:{{u}}:{part}``   user u's rate limits (``lua/limiter_*.lua``)
``{ns}:quota:{{u}}:{part}``    user u's quotas (``lua/quota_*.lua``)
``{ns}:grants:{{d}}:{part}``   provider deployment d's own limits (as the limits')
=============================  ======================================================
"""

from __future__ import annotations

from typing import NamedTuple

from bus import Names, user_tag

__all__ = ["LimiterKeys", "QuotaKeys", "limits_key", "quotas_key"]


class LimiterKeys(NamedTuple):
    """One user's rate-limit keys, in the KEYS order of ``lua/limiter_admit.lua``
    (``limiter_settle.lua`` takes ``settled``)."""

    config: str
    requests: str
    tokens: str
    cost: str
    reservations: str
    expiring: str
    alerts: str

    @classmethod
    def of(cls, names: Names, user_id: str, root: str = "limits") -> LimiterKeys:
        return cls(*(limits_key(names, user_id, part, root) for part in cls._fields))

    @property
    def settled(self) -> list[str]:
        """The KEYS of ``limiter_settle.lua``."""
        return [self.requests, self.tokens, self.cost, self.reservations, self.expiring]

    @property
    def usage(self) -> list[str]:
        """What a reset forgets: everything but the overrides."""
        return list(self[1:])


class QuotaKeys(NamedTuple):
    """One user's quota keys for the current month, day and session, in the KEYS order
    of ``lua/quota_admit.lua`` (``quota_settle.lua`` takes ``reservations``,
    ``expiring``)."""

    config: str
    month: str
    day: str
    session: str
    reservations: str
    expiring: str
    sessions: str


def limits_key(names: Names, user_id: str, part: str, root: str = "limits") -> str:
    """A key of one user's rate limits (``root`` "grants": a provider deployment's)."""
    return f"{names.ns}:{root}:{{{user_tag(user_id)}}}:{part}"


def quotas_key(names: Names, user_id: str, part: str) -> str:
    """A key of one user's quotas."""
    return f"{names.ns}:quota:{{{user_tag(user_id)}}}:{part}"
