"""A reservation store's answer to one admission, the same shape for both stores."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..messages import LimitState

__all__ = ["Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Admitted (and any warnings), or which limit or quota refused and until when.

    ``limit_type`` names what refused (``tokens_per_minute``, ``daily_cost``); a rate
    limit refuses for its ``window_s``, a quota for its ``period`` (until
    ``resets_at_ms``, 0 for a session). ``retry_after_s`` is None when waiting will
    not help (the request alone is over, or a session quota is spent).
    """

    admitted: bool
    duplicate: bool = False  # already admitted before (a redelivered request)
    limit_type: str = ""
    limit: float | None = None
    current: float | None = None
    window_s: float | None = None
    period: str = ""
    resets_at_ms: int = 0
    retry_after_s: float | None = None
    first_alert: bool = False  # the first refusal on that limit in its window or period
    rejections: int = 0
    warnings: list[tuple[str, float, float]] = field(default_factory=list)  # name, limit, used
    limits: list[LimitState] = field(default_factory=list)  # every limit, as it stands
