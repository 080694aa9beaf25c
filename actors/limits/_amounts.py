"""Limits as Redis stores them: integers for money (nano-dollars), "null" for none.

The limiter and the quota keeper keep per-user overrides in a hash and pass their
defaults to Lua as strings; this is the one place that says how.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..runtime.config import check_limits

__all__ = [
    "check_usage",
    "from_redis",
    "is_cost",
    "lua_defaults",
    "nano",
    "shown",
    "to_redis",
    "usd",
]


def is_cost(name: str) -> bool:
    """Whether a limit or quota is an amount of money (``cost_per_minute``,
    ``daily_cost``, ``daily_cost_limit``): kept in nano-dollars, shown in dollars."""
    return "cost" in name.split("_")


def shown(name: str, value: float) -> float:
    """A stored value of a limit, as shown (dollars for money)."""
    return usd(value) if is_cost(name) else value


def nano(usd_amount: float, *, up: bool = False) -> int:
    """US dollars as integer nano-dollars (rounded up for what is reserved)."""
    scaled = usd_amount * 1e9
    return math.ceil(scaled - 1e-6) if up else round(scaled)


def usd(nano_amount: float) -> float:
    return nano_amount / 1e9


def check_usage(tokens: int, cost_usd: float) -> None:
    """Amounts to charge: whole tokens and dollars, neither negative."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"tokens: a whole number >= 0, not {tokens!r}")
    if not math.isfinite(cost_usd) or cost_usd < 0:
        raise ValueError(f"cost: a finite number of dollars >= 0, not {cost_usd!r}")


def _stored(name: str, value: float | None) -> str:
    if value is None:
        return "null"
    return str(nano(value)) if is_cost(name) else repr(float(value))


def to_redis(changes: object, fields: tuple[str, ...]) -> dict[str, str]:
    """Checked overrides (``ValueError`` names a bad field) as hash fields."""
    return {name: _stored(name, value) for name, value in check_limits(changes, fields).items()}


def from_redis(
    stored: Mapping[Any, Any], fields: tuple[str, ...], defaults: Any
) -> dict[str, float | None]:
    """Every limit: the stored override where there is one, else the default."""
    out: dict[str, float | None] = {}
    for name in fields:
        raw = stored.get(name.encode())
        if raw is None:
            out[name] = getattr(defaults, name)
        elif raw == b"null":
            out[name] = None
        else:
            out[name] = shown(name, float(raw))
    return out


def lua_defaults(defaults: Any, fields: tuple[str, ...]) -> list[str]:
    """The defaults as the scripts take them ("" for unlimited)."""
    out = []
    for name in fields:
        value = getattr(defaults, name)
        out.append("" if value is None else _stored(name, value))
    return out
