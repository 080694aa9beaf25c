"""What a finished request charges, by how it ended."""

from __future__ import annotations

import pytest

from actors.limits._settlement import settlement
from actors.messages import RequestCompleted
from actors.providers import Usage

USED = Usage(input_tokens=10, output_tokens=5, total_tokens=15)


def _event(**fields: object) -> RequestCompleted:
    given: dict[str, object] = {"request_id": "r", "user_id": "u", "outcome": "ok", **fields}
    return RequestCompleted(**given)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "count_cache_hits", "charged"),
    [
        (_event(usage=USED, cost_usd=0.2), True,
         (True, 15, 0.2)),
        (_event(outcome="failed", error_kind="no_provider"), True, (True, 0, 0.0)),
        (_event(outcome="fallback", error_kind="no_provider"), True, (True, 0, 0.0)),
        (_event(outcome="failed", error_kind="rate_limited"), True, (False, 0, 0.0)),
        (_event(outcome="failed", error_kind="quota_exceeded"), True, (False, 0, 0.0)),
        (_event(outcome="failed", error_kind="admission_unavailable"), True, (False, 0, 0.0)),
        (_event(cache_hit=True, usage=USED), True,
         (True, 0, 0.0)),
        (_event(cache_hit=True), False, (False, 0, 0.0)),
    ],
    ids=["answered", "no-provider", "fallback-answer", "rate-limited", "over-quota",
         "unchecked", "cache-hit", "cache-hit-not-counted"],
)  # fmt: skip
def test_what_a_request_is_charged(
    event: RequestCompleted, count_cache_hits: bool, charged: tuple[bool, int, float]
) -> None:
    assert settlement(event, count_cache_hits=count_cache_hits) == charged
