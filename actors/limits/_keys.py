"""The limits' Redis keys: every key of one user shares one Redis Cluster slot.

=============================  ======================================================
key                            what (the Lua scripts' headers say each part's layout)
=============================  ======================================================
``{ns}:limits:{{u}}:{part}``   user u's rate limits (``lua/limiter_*.lua``)
``{ns}:quota:{{u}}:{part}``    user u's quotas (``lua/quota_*.lua``)
=============================  ======================================================
"""

from __future__ import annotations

from bus import Names, user_tag

__all__ = ["limits_key", "quotas_key"]


def limits_key(names: Names, user_id: str, part: str) -> str:
    """A key of one user's rate limits."""
    return f"{names.ns}:limits:{{{user_tag(user_id)}}}:{part}"


def quotas_key(names: Names, user_id: str, part: str) -> str:
    """A key of one user's quotas."""
    return f"{names.ns}:quota:{{{user_tag(user_id)}}}:{part}"
