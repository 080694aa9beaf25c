"""Admission: the router's ask to the limiter and the quota keeper, and their verdict."""

from __future__ import annotations

from typing import Literal

from bus import Message

from ._request import LimitState


class AdmissionAsk(Message, tag="admission.ask", frozen=True, kw_only=True):
    """To the limiter (``{ns}:limiter``) and the quota keeper (``{ns}:quota``): reserve
    one request, ``tokens`` and ``cost_usd`` for this user, or say why not."""

    request_id: str
    user_id: str
    session_id: str | None = None
    tokens: int
    cost_usd: float
    # What the reservation is known by: the request id and its entry on the requests
    # stream, so that a redelivery of that entry is charged once while a new request
    # reusing the id is charged again ("": the request id).
    reservation_id: str = ""
    # "reserve": to be settled by its request.completed; "record": charged for good
    # (an answer from the cache, whose usage is known: one request, no tokens, no cost).
    mode: Literal["reserve", "record"] = "reserve"
    tier: str = ""  # the user's tier (from its client key): whose limits apply


class AdmissionVerdict(Message, tag="admission.verdict", frozen=True, kw_only=True):
    """The answer to an ``admission.ask``; ``limits`` are the user's, as they stand."""

    admitted: bool
    kind: str = ""  # rate_limited | quota_exceeded
    limit_type: str = ""
    limit: float | None = None
    current: float | None = None
    retry_after_s: float | None = None
    message: str = ""
    limits: list[LimitState] = []
